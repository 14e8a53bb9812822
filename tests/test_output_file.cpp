// nn::OutputFile, the one writer of every file the programs write: replacement of regular files and new paths,
// symbolic links followed, FIFOs and devices written in place, directories refused, every failure reported with
// no temporary file left behind; and the writers built on it (checkpoints, TSV, vocabularies, pictures).
#include "autograd/error.h"
#include "models/data/corpus.h"
#include "models/data/tokenizer.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/output_file.h"
#include "tests/program_helpers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

using namespace gradformer;
using testing::message_of;
using testing::TempDir;
using testing::temporaries_in;

namespace {

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool is_character_device(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0 && S_ISCHR(info.st_mode);
}

}  // namespace

TEST_CASE("output file: a new path and a regular file are replaced whole, keeping the file's permissions") {
  const TempDir dir;
  const std::string path = dir.str("out.txt");
  nn::write_text_file(path, "first\n");
  CHECK(contents(path) == "first\n");
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  {
    nn::OutputFile out(path);
    out.write("second\n");
    // Until the commit the old contents stay: a reader never sees half a file.
    CHECK(contents(path) == "first\n");
    out.commit();
  }
  CHECK(contents(path) == "second\n");
  CHECK(std::filesystem::status(path).permissions() ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  CHECK(temporaries_in(dir.str()) == 0);
}

TEST_CASE("output file: an uncommitted or failed write leaves the old file and no temporary") {
  const TempDir dir;
  const std::string path = dir.str("out.txt");
  nn::write_text_file(path, "old\n");
  {
    nn::OutputFile out(path);
    out.write("half");
  }
  CHECK(contents(path) == "old\n");
  CHECK(temporaries_in(dir.str()) == 0);

  // A write that fails (EFBIG past RLIMIT_FSIZE stands in for a full disk, which a test cannot make).
  struct rlimit before {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &before) == 0);
  const auto previous_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = before;
  small.rlim_cur = 4;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string message = message_of<IOError>([&] { nn::write_text_file(path, "far more than four bytes\n"); });
  ::setrlimit(RLIMIT_FSIZE, &before);
  ::signal(SIGXFSZ, previous_handler);
  CHECK(message == path + ": write failed: File too large");
  CHECK(contents(path) == "old\n");
  CHECK(temporaries_in(dir.str()) == 0);

  // The rename fails when the target became a directory after the open.
  const std::string later_directory = dir.str("later");
  {
    nn::OutputFile out(later_directory);
    out.write("text");
    std::filesystem::create_directories(later_directory + "/inside");
    CHECK_THROWS_WITH_AS(out.commit(), doctest::Contains("cannot rename"), IOError);
  }
  CHECK(temporaries_in(dir.str()) == 0);

  const std::string missing = dir.str("missing/out.txt");
  CHECK(message_of<IOError>([&] { nn::write_text_file(missing, "x"); }) ==
        missing + ": cannot open for writing: No such file or directory");
  CHECK(message_of<IOError>([&] { nn::write_text_file(dir.str(), "x"); }) == dir.str() + ": is a directory, not a file");
}

TEST_CASE("output file: a symbolic link is followed and stays a link, even when it names no file yet") {
  const TempDir dir;
  const std::string target = dir.str("target.txt"), link = dir.str("link.txt");
  nn::write_text_file(target, "old\n");
  std::filesystem::create_symlink("target.txt", link);  // relative, as `ln -s` is mostly used
  nn::write_text_file(link, "new\n");
  CHECK(std::filesystem::is_symlink(link));
  CHECK(contents(target) == "new\n");

  const std::string dangling = dir.str("dangling.txt");
  std::filesystem::create_symlink(dir.str("created.txt"), dangling);
  nn::write_text_file(dangling, "made\n");
  CHECK(std::filesystem::is_symlink(dangling));
  CHECK(contents(dir.str("created.txt")) == "made\n");

  const std::string loop = dir.str("loop");
  std::filesystem::create_symlink("loop", loop);
  CHECK(message_of<IOError>([&] { nn::write_text_file(loop, "x"); }) ==
        loop + ": cannot open for writing: Too many levels of symbolic links");
  CHECK(temporaries_in(dir.str()) == 0);
}

TEST_CASE("output file: a FIFO and a device are written in place, never replaced") {
  const TempDir dir;
  const std::string fifo = dir.str("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(reader >= 0);
  nn::write_text_file(fifo, "through the pipe\n");
  char buffer[64] = {};
  const ssize_t got = ::read(reader, buffer, sizeof buffer);
  ::close(reader);
  CHECK(std::string(buffer, static_cast<size_t>(std::max<ssize_t>(got, 0))) == "through the pipe\n");
  CHECK(std::filesystem::is_fifo(fifo));
  CHECK(temporaries_in(dir.str()) == 0);

  CHECK(message_of<IOError>([] { nn::write_text_file("/dev/full", "x"); }) ==
        "/dev/full: write failed: No space left on device");
  CHECK(is_character_device("/dev/full"));
  const std::string link = dir.str("full");
  std::filesystem::create_symlink("/dev/full", link);
  CHECK(message_of<IOError>([&] { nn::write_text_file(link, "x"); }) == link + ": write failed: No space left on device");
  CHECK(std::filesystem::is_symlink(link));
}

TEST_CASE("output file: standard output is written in place and its errors name stdout") {
  // fd 1 pointed at /dev/full for the length of one write, then given back.
  const int saved = ::dup(STDOUT_FILENO);
  const int full = ::open("/dev/full", O_WRONLY);
  REQUIRE(saved >= 0);
  REQUIRE(full >= 0);
  ::dup2(full, STDOUT_FILENO);
  const std::string message = message_of<IOError>([] {
    nn::OutputFile out = nn::OutputFile::standard_output();
    out.write("lost\n");
  });
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ::close(full);
  CHECK(message == "stdout: write failed: No space left on device");
}

TEST_CASE("output file: Replace::never creates exclusively: of two writers of one new path the second fails") {
  const TempDir dir;
  const std::string path = dir.str("out.txt");
  const std::string expected =
      path + ": was created by another process while this one wrote it; it is left as that process wrote it";
  // Two processes (each names its temporary by its pid): the child opens first and commits last.
  int opened[2], committed[2];
  REQUIRE(::pipe(opened) == 0);
  REQUIRE(::pipe(committed) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int code = 3;
    try {
      nn::OutputFile second(path, nn::Replace::never);
      second.write("second");
      char byte = 0;
      if (::write(opened[1], &byte, 1) != 1 || ::read(committed[0], &byte, 1) != 1) ::_exit(4);
      try {
        second.commit();
        code = 1;
      } catch (const IOError& error) {
        code = error.what() == expected ? 0 : 2;
      }
    } catch (...) {
      code = 5;
    }
    ::_exit(code);
  }
  char byte = 0;
  REQUIRE(::read(opened[0], &byte, 1) == 1);
  nn::OutputFile first(path, nn::Replace::never);
  first.write("first");
  first.commit();
  REQUIRE(::write(committed[1], &byte, 1) == 1);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(contents(path) == "first");
  CHECK(temporaries_in(dir.str()) == 0);
  CHECK(message_of<IOError>([&] { nn::OutputFile third(path, nn::Replace::never); }) == path + ": already exists");
  for (int fd : {opened[0], opened[1], committed[0], committed[1]}) ::close(fd);
}

TEST_CASE("output file: remove_live_temporaries unlinks the open ones; a dead writer's goes at the next open") {
  const TempDir dir;
  const std::string path = dir.str("out.txt");
  {
    nn::OutputFile out(path);
    out.write("half");
    CHECK(temporaries_in(dir.str()) == 1);
    nn::remove_live_temporaries();  // what a program's signal handler does before it ends the process
    CHECK(temporaries_in(dir.str()) == 0);
  }
  nn::OutputFile committed(path);
  committed.write("whole");
  committed.commit();
  nn::remove_live_temporaries();  // a committed file is no temporary
  CHECK(contents(path) == "whole");

  // A process that died mid-write (no process has pid 999999999) left its temporary: the next writer removes it.
  std::ofstream(path + ".tmp.999999999") << "half";
  nn::write_text_file(path, "again");
  CHECK(temporaries_in(dir.str()) == 0);
}

TEST_CASE("output file: same_file_as compares regular files by identity, through links and '..'") {
  const TempDir dir;
  const std::string file = dir.str("a.txt");
  std::ofstream(file) << "a";
  std::filesystem::create_directories(dir.str("sub"));
  std::filesystem::create_symlink(file, dir.str("link.txt"));
  CHECK(nn::same_file_as(dir.str("sub/../a.txt"), {dir.str("other"), file}) == file);
  CHECK(nn::same_file_as(dir.str("link.txt"), {file}) == file);
  CHECK_FALSE(nn::same_file_as(dir.str("missing.txt"), {file}));
  CHECK_FALSE(nn::same_file_as("/dev/null", {"/dev/null"}));  // written in place, never replaced
}

TEST_CASE("output file: checkpoints, TSV files and vocabularies follow the rule") {
  const TempDir dir;
  Generator gen(1);
  const nn::Linear linear(2, 3, true, gen);
  std::filesystem::create_symlink("/dev/full", dir.str("full.safetensors"));
  CHECK(message_of<IOError>([&] { nn::save_weights(dir.str("full.safetensors"), linear); }) ==
        dir.str("full.safetensors") + ": write failed: No space left on device");
  CHECK(is_character_device("/dev/full"));

  std::filesystem::create_symlink("weights.safetensors", dir.str("link.safetensors"));
  nn::save_weights(dir.str("link.safetensors"), linear);
  CHECK(std::filesystem::is_symlink(dir.str("link.safetensors")));
  CHECK(std::filesystem::file_size(dir.str("weights.safetensors")) > 0);

  CHECK(message_of<IOError>([] { data::write_tsv("/dev/full", {{"a", "b"}}); }) ==
        "/dev/full: write failed: No space left on device");
  const data::Vocabulary vocabulary = data::Vocabulary::build({{"a", 1}, {"b", 1}});
  CHECK(message_of<IOError>([&] { vocabulary.save("/dev/full"); }) == "/dev/full: write failed: No space left on device");
  CHECK(temporaries_in(dir.str()) == 0);
}
