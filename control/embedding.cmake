# libchunkferry: one shared library holding the whole engine (io, codec, engine, control) with
# the C ABI of chunkferry.h on top, so that C programs (and any FFI) call the sync API directly
# and C++ programs use the engine's own headers against the same library. Included from
# control/CMakeLists.txt.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The target cannot be called `chunkferry`: that is the CLI (tools/). Its file and its exported
# name are still libchunkferry.so and chunkferry::chunkferry.
#
# It is built from the objects of the libraries (io, codec, engine's rooms, control), not from
# their archives: the linker would keep only the objects c_api.cc reaches, and the C++ API
# (copier, store daemon, HTTP endpoint, ...) would be missing. ($<LINK_LIBRARY:WHOLE_ARCHIVE,...> cannot do it: CMake refuses an
# archive that is also linked plainly, as chunkferry_control links chunkferry_engine.) Linking
# them as well brings their usage requirements (definitions, private dependencies); their
# archives then add nothing. Debian's Abseil, OpenSSL, zstd, xxHash, liburing and cpp-httplib are
# shared libraries built as PIC: they stay DT_NEEDED dependencies, none of them is copied in.
set(CHUNKFERRY_PARTS chunkferry_io chunkferry_codec ${CHUNKFERRY_ENGINE_PARTS} chunkferry_control)
add_library(chunkferry_shared SHARED c_api.cc)
foreach(part ${CHUNKFERRY_PARTS})
  target_sources(chunkferry_shared PRIVATE $<TARGET_OBJECTS:${part}>)
endforeach()
set_target_properties(chunkferry_shared PROPERTIES
  OUTPUT_NAME chunkferry
  EXPORT_NAME chunkferry
  VERSION ${PROJECT_VERSION}
  SOVERSION 0)
target_compile_definitions(chunkferry_shared PRIVATE CHUNKFERRY_VERSION="${PROJECT_VERSION}")
target_link_libraries(chunkferry_shared
  PRIVATE ${CHUNKFERRY_PARTS}
  # What the installed C++ headers include, for the C++ consumers of the exported target.
  PUBLIC
    absl::flat_hash_map absl::flat_hash_set absl::span absl::status absl::statusor absl::strings
    absl::str_format nlohmann_json::nlohmann_json Threads::Threads)
target_include_directories(chunkferry_shared
  PUBLIC
    "$<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}>"
    "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/chunkferry>")
# An undefined symbol must fail the library's link, not the first program that loads it.
target_link_options(chunkferry_shared PRIVATE "LINKER:--no-undefined")

# --- install: the library, chunkferry.h, the C++ headers, the CMake package, pkg-config ---
install(TARGETS chunkferry_shared EXPORT chunkferryTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/chunkferry.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The C++ headers keep their folder so that their own `#include "engine/store/store.h"` resolve under
# include/chunkferry. internal/ folders are not API and no installed header includes them.
foreach(dir io codec engine control)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/chunkferry/${dir}
    FILES_MATCHING PATTERN "*.h"
    PATTERN "internal" EXCLUDE
    PATTERN "chunkferry.h" EXCLUDE)
endforeach()

set(CHUNKFERRY_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/chunkferry)
install(EXPORT chunkferryTargets NAMESPACE chunkferry:: DESTINATION ${CHUNKFERRY_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_SOURCE_DIR}/chunkferryConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/chunkferryConfig.cmake INSTALL_DESTINATION ${CHUNKFERRY_CMAKE_DIR})
# 0.x: a new minor version may change the API.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/chunkferryConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/chunkferryConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/chunkferryConfigVersion.cmake DESTINATION ${CHUNKFERRY_CMAKE_DIR})

# The .pc file names absolute directories, so it is written at install time: `cmake --install
# --prefix P` must produce one for P, not for the prefix configured here. Relative install dirs
# (the GNUInstallDirs default) are joined to that prefix; absolute ones are kept.
install(CODE "
  set(prefix \"\${CMAKE_INSTALL_PREFIX}\")
  foreach(pair \"libdir;${CMAKE_INSTALL_LIBDIR}\" \"includedir;${CMAKE_INSTALL_INCLUDEDIR}\")
    list(GET pair 0 var)
    list(GET pair 1 dir)
    if(IS_ABSOLUTE \"\${dir}\")
      set(\${var} \"\${dir}\")
    else()
      set(\${var} \"\${prefix}/\${dir}\")
    endif()
  endforeach()
  set(CHUNKFERRY_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${CMAKE_CURRENT_SOURCE_DIR}/chunkferry.pc.in\"
    \"${CMAKE_CURRENT_BINARY_DIR}/pkgconfig-install/chunkferry.pc\" @ONLY)
  file(INSTALL \"${CMAKE_CURRENT_BINARY_DIR}/pkgconfig-install/chunkferry.pc\"
    DESTINATION \"\${libdir}/pkgconfig\")
")

# --- tests: the C ABI from C and from Python (ctypes), then the installed package ---
# Scratch data goes under the build tree (a real disk: the stores use O_DIRECT).
set(CHUNKFERRY_EMBED_TMP ${CMAKE_BINARY_DIR}/test-tmp/embedding)

add_executable(c_api_test c_api_test.c)
set_target_properties(c_api_test PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
target_link_libraries(c_api_test PRIVATE chunkferry_shared Threads::Threads)
target_compile_definitions(c_api_test PRIVATE CHUNKFERRY_EXPECTED_VERSION="${PROJECT_VERSION}")

add_test(NAME c_api_test
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/embedding_test.sh
    $<TARGET_FILE:chunkferry> ${CHUNKFERRY_EMBED_TMP}/c
    $<TARGET_FILE:c_api_test>)

# Under the sanitizers the library needs their runtime, and the ASan runtime must come first in
# a process's library list: the consumers of the install test are built with the same flags, and
# the (uninstrumented) interpreter gets the runtimes preloaded — only the interpreter, not the
# shell and CLI around it. The interpreter's own allocations at exit are not ours to report.
set(CHUNKFERRY_CONSUMER_FLAGS "")
set(CHUNKFERRY_PYTHON_ENV "")
if(CHUNKFERRY_SANITIZE)
  set(CHUNKFERRY_CONSUMER_FLAGS "-fsanitize=address,undefined")
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libasan.so
    OUTPUT_VARIABLE CHUNKFERRY_LIBASAN OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libubsan.so
    OUTPUT_VARIABLE CHUNKFERRY_LIBUBSAN OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(CHUNKFERRY_PYTHON_ENV env "LD_PRELOAD=${CHUNKFERRY_LIBASAN}:${CHUNKFERRY_LIBUBSAN}"
    ASAN_OPTIONS=detect_leaks=0)
endif()

find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME c_api_python_test
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/embedding_test.sh
    $<TARGET_FILE:chunkferry> ${CHUNKFERRY_EMBED_TMP}/python
    ${CHUNKFERRY_PYTHON_ENV} ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/c_api_test.py
    $<TARGET_FILE:chunkferry_shared>)

add_test(NAME embedding_install_test
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/embedding_install_test.sh
    ${CMAKE_BINARY_DIR} ${CHUNKFERRY_EMBED_TMP}/install ${CMAKE_C_COMPILER}
    ${CMAKE_CXX_COMPILER} ${CMAKE_COMMAND} "${CHUNKFERRY_CONSUMER_FLAGS}")
set_tests_properties(c_api_test c_api_python_test embedding_install_test PROPERTIES TIMEOUT 300)
