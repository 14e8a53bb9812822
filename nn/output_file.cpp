#include "nn/output_file.h"

#include "autograd/error.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
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

// The temporaries a signal handler removes: a fixed table, since a handler may neither allocate nor lock. A slot
// is claimed, filled, then published; the handler reads only published ones. A path too long for a slot (or a
// process with more open output files than slots) goes unlisted, and is left to remove_stale_temporaries.
enum SlotState : int { kFree, kFilling, kPublished };
constexpr size_t kSlotPathBytes = 4096;  // PATH_MAX
struct TemporarySlot {
  std::atomic<int> state{kFree};
  std::array<char, kSlotPathBytes> path{};
};
std::array<TemporarySlot, 16> live_temporaries;

int list_temporary(const std::string& path) {
  if (path.size() >= kSlotPathBytes) return -1;
  for (size_t i = 0; i < live_temporaries.size(); ++i) {
    int expected = kFree;
    if (!live_temporaries[i].state.compare_exchange_strong(expected, kFilling)) continue;
    std::copy(path.begin(), path.end(), live_temporaries[i].path.begin());
    live_temporaries[i].path[path.size()] = '\0';
    live_temporaries[i].state.store(kPublished);
    return static_cast<int>(i);
  }
  return -1;
}

void unlist_temporary(int slot) {
  if (slot >= 0) live_temporaries[static_cast<size_t>(slot)].state.store(kFree);
}

}  // namespace

void remove_live_temporaries() noexcept {
  for (TemporarySlot& slot : live_temporaries)
    if (slot.state.load() == kPublished) ::unlink(slot.path.data());
}

size_t remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code error;
  size_t removed = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix)) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
      continue;
    const pid_t writer = static_cast<pid_t>(std::stol(digits));
    // kill(pid, 0) delivers nothing: it only asks whether the process exists.
    if (writer == ::getpid() || !(::kill(writer, 0) != 0 && errno == ESRCH)) continue;
    if (fs::remove(entry.path(), error)) ++removed;
  }
  return removed;
}

std::optional<std::string> same_file_as(const std::string& output, const std::vector<std::string>& inputs) {
  // Only a regular file is replaced (a device or FIFO is written in place), so only one can be lost.
  struct stat out {};
  if (::stat(output.c_str(), &out) != 0 || !S_ISREG(out.st_mode)) return std::nullopt;
  for (const std::string& input : inputs) {
    struct stat in {};
    if (::stat(input.c_str(), &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino) return input;
  }
  return std::nullopt;
}

OutputFile::OutputFile(std::string path, int fd, bool owned) : path_(std::move(path)), target_(path_), fd_(fd), owned_(owned) {}

OutputFile OutputFile::standard_output() { return OutputFile("stdout", STDOUT_FILENO, false); }

OutputFile::OutputFile(std::string path, Replace replace) : path_(std::move(path)), replace_(replace) {
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
  if (exists && replace_ == Replace::never) fail<IOError>(path_, "already exists");
  remove_stale_temporaries(target_);
  const std::string temporary = fmt::format("{}.tmp.{}", target_, ::getpid());
  fd_ = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail<IOError>(path_, "cannot open for writing: {}", std::strerror(errno));
  slot_ = list_temporary(temporary);
  // The replacement keeps the permissions of the file it replaces (the umask would otherwise narrow them).
  if (exists && ::fchmod(fd_, info.st_mode & 07777) != 0) {
    const int error = errno;
    ::close(fd_);
    ::unlink(temporary.c_str());
    unlist_temporary(slot_);
    fail<IOError>(path_, "cannot give {} the permissions of the file it replaces: {}", temporary, std::strerror(error));
  }
  temporary_ = temporary;
}

OutputFile::~OutputFile() {
  if (owned_ && fd_ >= 0) ::close(fd_);
  if (!temporary_.empty()) ::unlink(temporary_.c_str());
  unlist_temporary(slot_);
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

  if (replace_ == Replace::never) {
    // link(2) fails where the name exists, where rename(2) would replace it: the exclusive create.
    if (::link(temporary_.c_str(), target_.c_str()) != 0) {
      if (errno == EEXIST)
        fail<IOError>(path_, "was created by another process while this one wrote it; it is left as that process "
                      "wrote it");
      fail<IOError>(path_, "cannot link {} to it: {}", temporary_, std::strerror(errno));
    }
    ::unlink(temporary_.c_str());
  } else if (::rename(temporary_.c_str(), target_.c_str()) != 0) {
    fail<IOError>(path_, "cannot rename {} over it: {}", temporary_, std::strerror(errno));
  }
  temporary_.clear();
  unlist_temporary(std::exchange(slot_, -1));
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
