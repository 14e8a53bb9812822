#include "nn/output_file.h"

#include "autograd/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace gradformer::nn {
namespace {

// The file a chain of symbolic links ends at (which need not exist yet: a link may name a file to create).
// The kernel gives up after 40 links, and so do we.
std::string follow_links(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path current(path);
  for (int links = 0;; ++links) {
    std::error_code error;
    if (!fs::is_symlink(fs::symlink_status(current, error))) return current.string();
    if (links == 40) fail<IOError>(path, "cannot open for writing: {}", std::strerror(ELOOP));
    const fs::path next = fs::read_symlink(current, error);
    if (error) fail<IOError>(path, "cannot read the symbolic link {}: {}", current.string(), error.message());
    current = next.is_absolute() ? next : current.parent_path() / next;
  }
}

}  // namespace

OutputFile::OutputFile(std::string path, int fd, bool owned) : path_(std::move(path)), target_(path_), fd_(fd), owned_(owned) {}

OutputFile OutputFile::standard_output() { return OutputFile("stdout", STDOUT_FILENO, false); }

OutputFile::OutputFile(std::string path) : path_(std::move(path)) {
  target_ = follow_links(path_);
  struct stat info {};
  const bool exists = ::stat(target_.c_str(), &info) == 0;
  if (!exists && errno != ENOENT) fail<IOError>(path_, "cannot open for writing: {}", std::strerror(errno));
  if (exists && S_ISDIR(info.st_mode)) fail<IOError>(path_, "is a directory, not a file");
  if (exists && !S_ISREG(info.st_mode)) {
    fd_ = ::open(target_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) fail<IOError>(path_, "cannot open for writing: {}", std::strerror(errno));
    return;
  }
  const std::string temporary = fmt::format("{}.tmp.{}", target_, ::getpid());
  fd_ = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail<IOError>(path_, "cannot open for writing: {}", std::strerror(errno));
  // The replacement keeps the permissions of the file it replaces (the umask would otherwise narrow them).
  if (exists && ::fchmod(fd_, info.st_mode & 07777) != 0) {
    const int error = errno;
    ::close(fd_);
    ::unlink(temporary.c_str());
    fail<IOError>(path_, "cannot give {} the permissions of the file it replaces: {}", temporary, std::strerror(error));
  }
  temporary_ = temporary;
}

OutputFile::~OutputFile() {
  if (owned_ && fd_ >= 0) ::close(fd_);
  if (!temporary_.empty()) ::unlink(temporary_.c_str());
}

void OutputFile::write(std::string_view text) {
  write(std::as_bytes(std::span(text.data(), text.size())));
}

void OutputFile::write(std::span<const std::byte> bytes) {
  if (fd_ < 0) fail<IOError>(path_, "write after the file was committed");
  while (!bytes.empty()) {
    const ssize_t wrote = ::write(fd_, bytes.data(), bytes.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) fail<IOError>(path_, "write failed: {}", std::strerror(errno));
    bytes = bytes.subspan(static_cast<size_t>(wrote));
  }
}

void OutputFile::commit() {
  if (fd_ < 0) fail<IOError>(path_, "committed twice");
  if (!owned_) {
    fd_ = -1;
    return;
  }
  // A full disk or a network file system may report a lost write only at fsync or close.
  if (!temporary_.empty() && ::fsync(fd_) != 0) fail<IOError>(path_, "write failed: {}", std::strerror(errno));
  if (::close(std::exchange(fd_, -1)) != 0) fail<IOError>(path_, "write failed: {}", std::strerror(errno));
  if (temporary_.empty()) return;

  if (::rename(temporary_.c_str(), target_.c_str()) != 0)
    fail<IOError>(path_, "cannot rename {} over it: {}", temporary_, std::strerror(errno));
  temporary_.clear();
  // Without this the rename itself may not survive a crash, leaving the old file (or none) after reboot.
  const std::filesystem::path parent = std::filesystem::path(target_).parent_path();
  const std::string directory = parent.empty() ? std::string(".") : parent.string();
  const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = dir >= 0 && ::fsync(dir) == 0;
  const int error = errno;
  if (dir >= 0) ::close(dir);
  if (!synced)
    fail<IOError>(path_, "written, but fsync of directory {} failed, so the rename may not be durable: {}", directory,
                  std::strerror(error));
}

void write_text_file(const std::string& path, std::string_view text) {
  OutputFile out(path);
  out.write(text);
  out.commit();
}

}  // namespace gradformer::nn
