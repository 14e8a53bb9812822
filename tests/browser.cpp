#include "tests/browser.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace gradformer::testing {
namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_decode(const std::string& text) {
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    const char* at = std::strchr(kBase64, c);
    if (c == '=' || c == '\0' || at == nullptr) continue;
    bits = (bits << 6) | static_cast<uint32_t>(at - kBase64);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xff);
    }
  }
  return out;
}

std::string base64_encode(const std::string& bytes) {
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kBase64[(v >> shift) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8);
    for (int shift : {18, 12, 6}) out += kBase64[(v >> shift) & 63];
    out += '=';
  }
  return out;
}

}  // namespace

std::string chromium_path() {
  const char* given = std::getenv("GRADFORMER_CHROMIUM");
  const std::string path = given != nullptr && *given != '\0' ? given : "/usr/bin/chromium";
  return ::access(path.c_str(), X_OK) == 0 ? path : std::string();
}

Browser::Browser() {
  const std::string executable = chromium_path();
  if (executable.empty()) throw std::runtime_error("no chromium to drive (apt-get install chromium)");
  static int counter = 0;
  profile_dir_ = (std::filesystem::temp_directory_path() /
                  ("gradformer-chromium-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
                     .string();
  std::filesystem::remove_all(profile_dir_);
  std::filesystem::create_directories(profile_dir_ + "/profile");
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  // The browser's end must not already be descriptor 3 or 4: dup2 onto itself would keep close-on-exec.
  const int theirs = ::fcntl(ends[1], F_DUPFD_CLOEXEC, 10);
  ::close(ends[1]);
  to_browser_ = from_browser_ = ends[0];
  const std::vector<std::string> args{executable,
                                      "--headless",
                                      "--no-sandbox",  // the tests run as root
                                      "--disable-gpu",
                                      "--disable-quic",
                                      "--no-first-run",
                                      "--disable-background-networking",
                                      "--disable-component-update",
                                      "--disable-sync",
                                      "--hide-scrollbars",
                                      "--mute-audio",
                                      "--remote-debugging-pipe",
                                      "--user-data-dir=" + profile_dir_ + "/profile"};
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  const std::string log = profile_dir_ + "/chromium.log";
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_adddup2(&actions, theirs, 3);
  posix_spawn_file_actions_adddup2(&actions, theirs, 4);
  const int spawned = ::posix_spawn(&pid_, executable.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(theirs);
  if (spawned != 0) {
    pid_ = -1;
    fail(std::string("cannot start ") + executable + ": " + std::strerror(spawned));
  }
  call("Browser.getVersion", nlohmann::json::object(), false);
}

Browser::~Browser() {
  if (pid_ > 0) {
    timeout_ = std::chrono::seconds(20);
    try {
      call("Browser.close", nlohmann::json::object(), false);
    } catch (const std::exception&) {
      // Killed below.
    }
    int status = 0;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  if (to_browser_ >= 0) ::close(to_browser_);
  std::error_code ignored;
  std::filesystem::remove_all(profile_dir_, ignored);
}

void Browser::fail(const std::string& what) const {
  std::ifstream in(profile_dir_ + "/chromium.log");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string tail;
  for (size_t i = lines.size() > 15 ? lines.size() - 15 : 0; i < lines.size(); ++i) tail += "\n  " + lines[i];
  throw std::runtime_error("chromium: " + what + (tail.empty() ? "" : "; its last output lines:" + tail));
}

nlohmann::json Browser::receive() {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    if (const size_t end = pending_.find('\0'); end != std::string::npos) {
      nlohmann::json message = nlohmann::json::parse(pending_.substr(0, end));
      pending_.erase(0, end + 1);
      return message;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) fail("no answer within " + std::to_string(timeout_.count()) + " s");
    pollfd p{from_browser_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[1 << 16];
    const ssize_t got = ::recv(from_browser_, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) fail("the browser closed its pipe (it exited)");
    pending_.append(buffer, static_cast<size_t>(got));
  }
}

nlohmann::json Browser::call(const std::string& method, const nlohmann::json& params, bool in_tab) {
  const int64_t id = next_id_++;
  nlohmann::json message{{"id", id}, {"method", method}, {"params", params}};
  if (in_tab) message["sessionId"] = session_;
  const std::string text = message.dump() + '\0';
  for (size_t sent = 0; sent < text.size();) {
    const ssize_t n = ::send(to_browser_, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(method + ": cannot send: " + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  for (;;) {
    nlohmann::json answer = receive();
    if (!answer.contains("id")) {
      note(answer);
      events_.push_back(std::move(answer));
      continue;
    }
    if (answer["id"] != id) continue;
    if (answer.contains("error")) fail(method + " failed: " + answer["error"].dump());
    return answer.value("result", nlohmann::json::object());
  }
}

void Browser::note(const nlohmann::json& event) {
  if (event.value("sessionId", "") != session_) return;
  const std::string method = event.value("method", "");
  const nlohmann::json& p = event.contains("params") ? event["params"] : nlohmann::json::object();
  if (method == "Runtime.consoleAPICalled") {
    const std::string type = p.value("type", "");
    if (type != "error" && type != "assert") return;
    std::string text = "console." + type + ":";
    for (const nlohmann::json& arg : p.value("args", nlohmann::json::array())) {
      text += ' ';
      text += arg.contains("value") ? arg["value"].dump() : arg.value("description", "?");
    }
    problems_.push_back(text);
  } else if (method == "Runtime.exceptionThrown") {
    const nlohmann::json& details = p["exceptionDetails"];
    problems_.push_back("uncaught exception: " + (details.contains("exception")
                                                      ? details["exception"].value("description", details.dump())
                                                      : details.value("text", details.dump())));
  } else if (method == "Log.entryAdded") {
    const nlohmann::json& entry = p["entry"];
    if (entry.value("level", "") == "error")
      problems_.push_back("log: " + entry.value("text", "") + " " + entry.value("url", ""));
  } else if (method == "Network.loadingFailed") {
    problems_.push_back("failed to load: " + p.value("errorText", "") + " (" + p.value("type", "") + ")");
  } else if (method == "Network.requestWillBeSent") {
    const std::string url = p["request"].value("url", "");
    if (url != page_url_ && url.rfind("data:", 0) != 0) problems_.push_back("request to " + url);
  }
}

void Browser::wait_for_event(const std::string& method) {
  for (size_t i = 0; i < events_.size(); ++i)
    if (events_[i].value("method", "") == method && events_[i].value("sessionId", "") == session_) {
      events_.erase(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      return;
    }
  events_.clear();
  for (;;) {
    const nlohmann::json event = receive();
    if (event.contains("id")) continue;
    note(event);
    if (event.value("method", "") == method && event.value("sessionId", "") == session_) return;
  }
}

void Browser::open(const std::string& path, int width, int height) {
  const std::string target =
      call("Target.createTarget", {{"url", "about:blank"}}, false).at("targetId").get<std::string>();
  session_ = call("Target.attachToTarget", {{"targetId", target}, {"flatten", true}}, false)
                 .at("sessionId")
                 .get<std::string>();
  page_url_ = path == "about:blank" ? path : "file://" + std::filesystem::absolute(path).string();
  for (const char* domain : {"Page.enable", "Runtime.enable", "Log.enable", "Network.enable"}) call(domain);
  call("Emulation.setDeviceMetricsOverride",
       {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}});
  events_.clear();
  call("Page.navigate", {{"url", page_url_}});
  wait_for_event("Page.loadEventFired");
}

nlohmann::json Browser::evaluate(const std::string& expression) {
  const nlohmann::json result =
      call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}});
  if (result.contains("exceptionDetails")) {
    const nlohmann::json& details = result["exceptionDetails"];
    throw std::runtime_error("evaluate: " + (details.contains("exception")
                                                 ? details["exception"].value("description", details.dump())
                                                 : details.dump()));
  }
  return result.at("result").value("value", nlohmann::json());
}

void Browser::move_mouse(double x, double y) {
  call("Input.dispatchMouseEvent", {{"type", "mouseMoved"}, {"x", x}, {"y", y}});
}

void Browser::click(double x, double y) {
  move_mouse(x, y);
  for (const char* type : {"mousePressed", "mouseReleased"})
    call("Input.dispatchMouseEvent", {{"type", type}, {"x", x}, {"y", y}, {"button", "left"}, {"clickCount", 1}});
}

std::string Browser::screenshot_png() {
  return base64_decode(call("Page.captureScreenshot", {{"format", "png"}}).at("data").get<std::string>());
}

nlohmann::json Browser::png_statistics(const std::string& png) {
  open("about:blank");
  return evaluate(R"js(new Promise((resolve, reject) => {
  const image = new Image();
  image.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let nonWhite = 0;
    const colours = new Set();
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i] < 250 || pixels[i + 1] < 250 || pixels[i + 2] < 250) ++nonWhite;
      if (colours.size < 4096) colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
    }
    resolve({width: canvas.width, height: canvas.height, non_white: nonWhite, colours: colours.size});
  };
  image.onerror = () => reject(new Error("the screenshot does not decode as PNG"));
  image.src = "data:image/png;base64,)js" + base64_encode(png) + R"js(";
}))js");
}

}  // namespace gradformer::testing
