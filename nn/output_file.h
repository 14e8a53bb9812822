// The one way gradformer writes a file (checkpoints, pictures, logs of data, translations), so that every program
// follows one rule and never loses what was there:
// - a regular file, or a path that does not exist yet, is replaced atomically: the bytes go to PATH.tmp.PID beside
//   it, which is fsynced and renamed over PATH, so PATH holds the old or the complete new contents, never a mix;
// - a symbolic link is followed, and the rule applies to the file it names (the link stays a link);
// - anything else that can be written (a FIFO, a terminal, a device such as /dev/full) is written in place,
//   since renaming over it would destroy the node; a directory is refused.
// Every write, fsync and close is checked: a failure throws IOError "PATH: write failed: <reason>" and removes
// the temporary file. Not a reader, and not for appending (a log that grows is opened in place by its owner).
// Every temporary file a process has open is listed where a signal handler can reach it
// (remove_live_temporaries), so that a program ending on a signal leaves none behind; one a killed process left
// (SIGKILL, power loss) is removed by the next OutputFile of the same path (remove_stale_temporaries).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::nn {

// Whether commit may replace a file that exists by then. Replace::never creates the file exclusively (link(2)
// of the temporary): of two processes writing one new path, the second fails instead of replacing the first's.
enum class Replace { existing, never };

class OutputFile {
 public:
  // Opens now (creating the temporary file for a replacement), so that a path that cannot be written is reported
  // before any work is done. Throws IOError naming `path`.
  explicit OutputFile(std::string path, Replace replace = Replace::existing);
  // The process's standard output, written in place and never closed; errors name it "stdout".
  static OutputFile standard_output();
  // Removes the temporary file of a replacement that was not committed: the target keeps its old contents.
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Straight to the descriptor, unbuffered: what write returns from has left the process (a reader of a pipe sees
  // it at once).
  void write(std::string_view text);
  void write(std::span<const std::byte> bytes);
  // Makes the written bytes the file's contents: fsync, close and rename for a replacement (and fsync of the
  // directory, so that the rename survives a crash); a checked close for a file written in place.
  void commit();

  // The path as given (what error messages name).
  const std::string& path() const { return path_; }

 private:
  OutputFile(std::string path, int fd, bool owned);

  std::string path_;       // as given
  std::string target_;     // after following symbolic links
  std::string temporary_;  // empty when written in place
  int fd_ = -1;
  bool owned_ = true;      // false for stdout, which is not ours to close
  Replace replace_ = Replace::existing;
  int slot_ = -1;          // the temporary's entry among the live ones, -1 when unlisted
};

// Writes `text` as the whole contents of `path` through OutputFile.
void write_text_file(const std::string& path, std::string_view text);

// Unlinks every temporary file of an OutputFile of this process that is still open. Async-signal-safe: for the
// handler of a signal that ends the program.
void remove_live_temporaries() noexcept;

// Removes the `path + ".tmp.<pid>"` files an OutputFile left behind when its process died mid-write (SIGKILL,
// power loss), those whose pid is no running process; a live writer's file stays. Returns how many it removed.
size_t remove_stale_temporaries(const std::string& path);

// The first of `inputs` that is the same regular file as `output` (device and inode, through symbolic links and
// `..`), if any: a program never writes over what it reads. A path that does not exist, or names a device or a
// FIFO (written in place, never replaced), matches nothing.
std::optional<std::string> same_file_as(const std::string& output, const std::vector<std::string>& inputs);

}  // namespace gradformer::nn
