// Asynchronous librados operations held by value: the completion is created with the operation
// and released after it has finished, so that buffers librados reads into or writes from stay
// owned by the caller until then.
#ifndef CHUNKFERRY_ENGINE_RADOS_RADOS_AIO_H_
#define CHUNKFERRY_ENGINE_RADOS_RADOS_AIO_H_

#include <rados/librados.hpp>

namespace chunkferry::engine::rados {

// One operation. Its destructor waits for it when it was submitted (Submit() said so).
class Aio {
 public:
  Aio() : c_(librados::Rados::aio_create_completion()) {}
  ~Aio() {
    if (c_ == nullptr) return;
    if (submitted_) c_->wait_for_complete();
    c_->release();
  }
  Aio(Aio&& o) noexcept : c_(o.c_), submitted_(o.submitted_) { o.c_ = nullptr; }
  Aio(const Aio&) = delete;
  Aio& operator=(const Aio&) = delete;
  // Submits with `submit(completion)` (an aio_* call); its negative result means nothing runs.
  template <typename F>
  int Submit(F&& submit) {
    const int r = submit(c_);
    submitted_ = r >= 0;
    return r;
  }
  bool submitted() const { return submitted_; }
  // The operation's result; 0 for one never submitted.
  int Wait() {
    if (!submitted_) return 0;
    c_->wait_for_complete();
    return c_->get_return_value();
  }

 private:
  librados::AioCompletion* c_;
  bool submitted_ = false;
};

}  // namespace chunkferry::engine::rados

#endif  // CHUNKFERRY_ENGINE_RADOS_RADOS_AIO_H_
