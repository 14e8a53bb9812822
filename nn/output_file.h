// The one way gradformer writes a file (checkpoints, pictures, logs of data, translations), so that every program
// follows one rule and never loses what was there:
// - a regular file, or a path that does not exist yet, is replaced atomically: the bytes go to PATH.tmp.PID beside
//   it, which is fsynced and renamed over PATH, so PATH holds the old or the complete new contents, never a mix;
// - a symbolic link is followed, and the rule applies to the file it names (the link stays a link);
// - anything else that can be written (a FIFO, a terminal, a device such as /dev/full) is written in place,
//   since renaming over it would destroy the node; a directory is refused.
// Every write, fsync and close is checked: a failure throws IOError "PATH: write failed: <reason>" and removes
// the temporary file. Not a reader, and not for appending (a log that grows is opened in place by its owner).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace gradformer::nn {

class OutputFile {
 public:
  // Opens now (creating the temporary file for a replacement), so that a path that cannot be written is reported
  // before any work is done. Throws IOError naming `path`.
  explicit OutputFile(std::string path);
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
};

// Writes `text` as the whole contents of `path` through OutputFile.
void write_text_file(const std::string& path, std::string_view text);

}  // namespace gradformer::nn
