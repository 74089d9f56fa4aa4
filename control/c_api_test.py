#!/usr/bin/env python3
"""The C ABI of libchunkferry from Python through ctypes (standard library only): a real sync of
the group that embedding_test.sh prepared, progress through a CFUNCTYPE callback, then the
answers to bad calls.

usage: c_api_test.py LIBCHUNKFERRY CONFIG GROUP SRC_STORAGE DST_STORAGE ROOT_BACKUP
"""
import ctypes
import json
import sys
import threading
import unittest

CHUNKFERRY_WITH_SCHEMA = 1
CHUNKFERRY_ONE_BACKUP = 2
CHUNKFERRY_DELETE_GROUP = 0
CHUNKFERRY_DELETE_BACKUP = 1
REF_CLASS = "org.zstack.header.storage.backup.VolumeBackupStorageRefInventory"
INVENTORY_CLASS = "org.zstack.header.storage.backup.VolumeBackupInventory"


class Progress(ctypes.Structure):
    _fields_ = [
        ("phase", ctypes.c_char_p),
        ("bytes_done", ctypes.c_uint64),
        ("bytes_total", ctypes.c_uint64),
        ("chunks_done", ctypes.c_uint64),
        ("chunks_total", ctypes.c_uint64),
        ("seconds", ctypes.c_double),
        ("final", ctypes.c_int),
        ("bytes_sent", ctypes.c_uint64),
        ("chunks_sent", ctypes.c_uint64),
    ]


ProgressFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(Progress))


class Library:
    """libchunkferry's functions. Strings it hands out are read, then released with
    chunkferry_free: they are declared c_void_p so that ctypes keeps the pointer."""

    def __init__(self, path):
        lib = ctypes.CDLL(path)
        lib.chunkferry_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.chunkferry_open.restype = ctypes.c_void_p
        lib.chunkferry_sync.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint, ProgressFn,
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        ]
        lib.chunkferry_sync.restype = ctypes.c_int
        lib.chunkferry_free.argtypes = [ctypes.c_void_p]
        lib.chunkferry_free.restype = None
        lib.chunkferry_close.argtypes = [ctypes.c_void_p]
        lib.chunkferry_close.restype = None
        lib.chunkferry_delete_from.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)
        ]
        lib.chunkferry_delete_from.restype = ctypes.c_int
        lib.chunkferry_query.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)
        ]
        lib.chunkferry_query.restype = ctypes.c_int
        lib.chunkferry_version.argtypes = []
        lib.chunkferry_version.restype = ctypes.c_char_p
        self.lib = lib

    def take_string(self, pointer):
        """The text at `pointer`, which is then freed; None for a null pointer."""
        if not pointer.value:
            return None
        try:
            return ctypes.string_at(pointer.value).decode("utf-8")
        finally:
            self.lib.chunkferry_free(pointer.value)

    def open(self, config):
        error = ctypes.c_void_p()
        path = None if config is None else config.encode()
        handle = self.lib.chunkferry_open(path, ctypes.byref(error))
        return handle, self.take_string(error)

    def sync(self, handle, group, body, flags=0, progress=None):
        """(status, response text) of one chunkferry_sync."""
        response = ctypes.c_void_p()
        callback = ProgressFn(progress) if progress else ProgressFn()
        status = self.lib.chunkferry_sync(handle, None if group is None else group.encode(),
                                          None if body is None else body.encode(), flags,
                                          callback, None, ctypes.byref(response))
        return status, self.take_string(response)


    def delete_from(self, handle, kind, uuid, storages):
        """(status, response text) of one chunkferry_delete_from."""
        response = ctypes.c_void_p()
        array = (ctypes.c_char_p * len(storages))(*[s.encode() for s in storages])
        status = self.lib.chunkferry_delete_from(handle, kind, uuid.encode(), array, len(storages),
                                                 ctypes.byref(response))
        return status, self.take_string(response)

    def query(self, handle, query):
        """(status, response text) of one chunkferry_query."""
        response = ctypes.c_void_p()
        status = self.lib.chunkferry_query(handle, None if query is None else query.encode(),
                                           ctypes.byref(response))
        return status, self.take_string(response)


class CApiTest(unittest.TestCase):
    lib = None
    config = group = src = dst = root = None

    @classmethod
    def setUpClass(cls):
        cls.body = json.dumps({
            "syncVmBackupFromImageStoreBackupStorage": {
                "srcBackupStorageUuid": cls.src,
                "dstBackupStorageUuid": cls.dst
            },
            "systemTags": [],
            "userTags": ["python-ctypes"]
        })
        cls.handle, error = cls.lib.open(cls.config)
        if not cls.handle:
            raise AssertionError(f"chunkferry_open({cls.config}): {error}")

    @classmethod
    def tearDownClass(cls):
        cls.lib.lib.chunkferry_close(cls.handle)

    def check_inventories(self, response):
        inventories = response["inventories"]
        self.assertEqual(len(inventories), 3)
        self.assertEqual(inventories[0]["uuid"], self.root)
        self.assertEqual([i["type"] for i in inventories], ["Root", "Data", "Data"])
        for inventory in inventories:
            self.assertEqual(inventory["groupUuid"], self.group)
            self.assertIsInstance(inventory["size"], int)
            self.assertEqual(inventory["size"], 2 * 1024 * 1024)
            refs = inventory["backupStorageRefs"]
            self.assertEqual(sorted(r["backupStorageUuid"] for r in refs),
                             sorted([self.src, self.dst]))
            for ref in refs:
                self.assertEqual(ref["volumeBackupUuid"], inventory["uuid"])
            # The platform keeps the install path of the source on the destination.
            self.assertEqual(refs[0]["installPath"], refs[1]["installPath"])

    # Named so that unittest runs it first: the later tests find the group synced.
    def test_1_sync_reports_progress_then_repeats(self):
        reports = []
        caller = threading.get_ident()

        def on_progress(user, progress):
            p = progress.contents
            reports.append((p.phase.decode(), p.bytes_done, p.bytes_total, p.final,
                            threading.get_ident(), p.bytes_sent))

        status, text = self.lib.sync(self.handle, self.group, self.body, progress=on_progress)
        self.assertEqual(status, 200, text)
        response = json.loads(text)
        self.assertEqual(list(response), ["inventories"])
        self.check_inventories(response)
        self.assertTrue(reports, "the progress callback never ran")
        self.assertTrue(any(r[3] for r in reports), f"no final report in {reports}")
        # The first copy sends records; the repeat below (nothing missing) sends none.
        self.assertGreater(max(r[5] for r in reports), 0, reports)
        for phase, done, total, _, thread, _ in reports:
            self.assertTrue(phase)
            self.assertEqual(thread, caller)
            if total:
                self.assertLessEqual(done, total)

        repeat = []

        def on_repeat(user, progress):
            p = progress.contents
            repeat.append((p.phase.decode(), p.bytes_done, p.bytes_sent, p.chunks_sent))

        status, text = self.lib.sync(self.handle, self.group, self.body, CHUNKFERRY_WITH_SCHEMA,
                                     progress=on_repeat)
        self.assertEqual(status, 200, text)
        self.assertTrue(repeat)
        self.assertTrue(all(r[2] == 0 and r[3] == 0 for r in repeat), repeat)
        response = json.loads(text)
        self.check_inventories(response)
        schema = response["schema"]
        self.assertEqual(schema["inventories[0]"], INVENTORY_CLASS)
        self.assertEqual(schema["inventories[2].backupStorageRefs[1]"], REF_CLASS)
        self.assertEqual(len(schema), 3 + 6)

    def test_2_threads_share_the_handle(self):
        results = []

        def run():
            results.append(self.lib.sync(self.handle, self.group, self.body))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 4)
        for status, text in results:
            self.assertEqual(status, 200, text)
            self.check_inventories(json.loads(text))

    def test_3_the_backup_family(self):
        """QueryVolumeBackup, then DeleteVmBackup from the destination, the Root backup synced
        back alone and removed with DeleteVolumeBackup, and the group synced back."""
        status, text = self.lib.query(self.handle, f"q=groupUuid%3D{self.group}&sort=-size")
        self.assertEqual(status, 200, text)
        answer = json.loads(text)
        self.assertEqual(len(answer["inventories"]), 3)
        self.assertEqual(answer["schema"]["inventories[0]"], INVENTORY_CLASS)
        status, text = self.lib.query(self.handle, f"q=uuid%3D{self.root}&fields=uuid,type")
        self.assertEqual(json.loads(text)["inventories"], [{"uuid": self.root, "type": "Root"}])
        status, text = self.lib.query(self.handle, "q=size")
        self.assertEqual(status, 400, text)

        status, text = self.lib.delete_from(self.handle, CHUNKFERRY_DELETE_GROUP, self.group,
                                            [self.dst])
        self.assertEqual((status, text), (200, "{}"))
        status, text = self.lib.query(self.handle, f"q=backupStorage.uuid%3D{self.dst}&count=true")
        self.assertEqual(json.loads(text)["total"], 0, text)
        one = json.dumps({"syncBackupFromImageStoreBackupStorage": {
            "srcBackupStorageUuid": self.src, "dstBackupStorageUuid": self.dst}})
        status, text = self.lib.sync(self.handle, self.root, one, CHUNKFERRY_ONE_BACKUP)
        self.assertEqual(status, 200, text)
        self.assertEqual(json.loads(text)["inventory"]["uuid"], self.root)
        status, text = self.lib.query(self.handle, f"q=backupStorage.uuid%3D{self.dst}")
        self.assertEqual([i["uuid"] for i in json.loads(text)["inventories"]], [self.root])
        status, text = self.lib.delete_from(self.handle, CHUNKFERRY_DELETE_BACKUP, self.root,
                                            [self.dst])
        self.assertEqual((status, text), (200, "{}"))
        status, text = self.lib.delete_from(self.handle, CHUNKFERRY_DELETE_BACKUP, self.root,
                                            [self.dst])
        self.assertEqual(status, 503, text)
        self.assertEqual(json.loads(text)["error"]["code"], "SYS.1003")
        status, text = self.lib.sync(self.handle, self.group, self.body)
        self.assertEqual(status, 200, text)

    def test_bad_bodies_are_400_with_text(self):
        for body in ["{not json", "[]", '{"deleteVmBackup": {}}']:
            status, text = self.lib.sync(self.handle, self.group, body)
            self.assertEqual(status, 400, f"{body}: {text}")
            self.assertTrue(text)
            self.assertFalse(text.startswith("{"), text)

    def test_unknown_group_is_sys_1003(self):
        status, text = self.lib.sync(self.handle, "0123456789abcdef0123456789abcdef", self.body)
        self.assertEqual(status, 503, text)
        self.assertEqual(json.loads(text)["error"]["code"], "SYS.1003")

    def test_missing_field_is_sys_1007(self):
        body = json.dumps(
            {"syncVmBackupFromImageStoreBackupStorage": {
                "srcBackupStorageUuid": self.src
            }})
        status, text = self.lib.sync(self.handle, self.group, body)
        self.assertEqual(status, 503, text)
        self.assertEqual(json.loads(text)["error"]["code"], "SYS.1007")

    def test_null_arguments_are_400(self):
        self.assertEqual(self.lib.sync(None, self.group, self.body)[0], 400)
        self.assertEqual(self.lib.sync(self.handle, None, self.body)[0], 400)
        self.assertEqual(self.lib.sync(self.handle, self.group, None)[0], 400)
        status = self.lib.lib.chunkferry_sync(None, None, None, 0, ProgressFn(), None, None)
        self.assertEqual(status, 400)
        self.assertEqual(self.lib.sync(self.handle, self.group, self.body, flags=0x80)[0], 400)

    def test_open_failures_say_why(self):
        handle, error = self.lib.open(None)
        self.assertFalse(handle)
        self.assertIn("NULL", error)
        missing = "/nonexistent/chunkferry/registry.json"
        handle, error = self.lib.open(missing)
        self.assertFalse(handle)
        self.assertIn(missing, error)

    def test_version(self):
        version = self.lib.lib.chunkferry_version().decode()
        self.assertRegex(version, r"^\d+\.\d+\.\d+$")


def main():
    if len(sys.argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    lib_path, CApiTest.config, CApiTest.group, CApiTest.src, CApiTest.dst, CApiTest.root = (
        sys.argv[1:])
    CApiTest.lib = Library(lib_path)
    result = unittest.main(argv=[sys.argv[0], "-v"], exit=False).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
