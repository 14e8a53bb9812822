// gradformer-mpi-tests: data-parallel training (nn/distributed.h, models/trainer.h) on real Open MPI.
// Run twice (run.sh does): under `mpirun -np 2` it runs the "collective" suite, where both ranks train one model
// together and rank 0 compares the weights with a single-process run on the joint batch (the same test cases run
// on both ranks because they hold collectives; rank 1's report goes to /dev/null, a failure there still shows
// in the exit status); started alone it runs the "launch" suite, which starts gradformer-train under mpirun,
// kills a rank, resumes, and checks the messages of bad use.
#include "models/trainer.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/distributed.h"
#include "ops/ops.h"
#include "ops/threads.h"

#include "../helpers.h"
#include "../model_helpers.h"

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace gradformer;

namespace {

const nn::Distributed& job() { return nn::Distributed::world(); }

// A directory every rank names alike (rank 0's pid, broadcast), removed at the end by rank 0.
class SharedDir {
 public:
  explicit SharedDir(const std::string& tag) {
    std::array<double, 1> pid{static_cast<double>(::getpid())};
    job().broadcast(pid);
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("gradformer-mpi-{}-{}", static_cast<int64_t>(pid[0]), tag);
    if (job().is_root()) std::filesystem::create_directories(path_);
    barrier();
  }
  ~SharedDir() {
    barrier();
    std::error_code ignored;
    if (job().is_root()) std::filesystem::remove_all(path_, ignored);
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  std::string str(const std::string& sub) const { return (path_ / sub).string(); }
  static void barrier() {
    std::array<int64_t, 1> token{0};
    job().allreduce_sum(token);
  }

 private:
  std::filesystem::path path_;
};

const testing::EncodedTask& copy_data() {
  static const testing::EncodedTask data = testing::encode_task(data::make_copy_task(5, 60, 4, 0), 64);
  return data;
}

nlohmann::json tiny_config(double dropout) {
  return testing::tiny_transformer_config(static_cast<int64_t>(copy_data().codec.vocabulary().size()), dropout, 32,
                                          16);
}

struct Run {
  std::vector<std::vector<double>> weights;
  std::vector<std::string> names;
  std::vector<std::pair<double, double>> losses;
};

// Trains a fresh f64 model (same initial weights on every call) for `steps` steps with `distributed`.
Run train(const nn::Distributed& distributed, const std::string& out_dir, int64_t steps, size_t max_tokens,
          int64_t update_freq, const std::vector<models::Example>& examples, double dropout = 0.0,
          int64_t valid_every = 0, const std::string& resume = "", const nn::GradientReducerOptions& allreduce = {}) {
  const nlohmann::json config = tiny_config(dropout);
  default_generator().manual_seed(2024);
  const auto model = models::make_model(config, default_generator());
  model->to(DType::f64);
  models::TrainConfig train_config;
  train_config.out_dir = out_dir;
  train_config.max_steps = steps;
  train_config.max_tokens = max_tokens;
  train_config.warmup_steps = 4;
  train_config.lr_factor = 1.0;
  train_config.clip_norm = 0.5;  // so that clipping by the global norm is exercised
  train_config.valid_every = valid_every;
  train_config.valid_bleu_sentences = 0;
  train_config.update_freq = update_freq;
  train_config.gradient_allreduce = allreduce;
  const testing::EncodedTask& d = copy_data();
  const std::vector<models::Example> valid(d.train.begin(), d.train.begin() + 4);
  models::Trainer trainer(*model, d.codec, examples, valid, {}, train_config, config, distributed);
  if (!resume.empty()) trainer.resume(resume);
  trainer.run([](const models::StepStats&) {}, [](const models::ValidStats&) {});
  Run run;
  for (const auto& [name, p] : model->named_parameters()) {
    run.weights.push_back(p.to_vector<double>());
    run.names.push_back(name);
  }
  run.losses = trainer.train_losses();
  return run;
}

// Every weight within 1e-10 of its tensor's largest magnitude, except the key third of each attention's
// in_proj_bias: its gradient is zero in exact arithmetic (adding q·b_k to all of a query's scores leaves the
// softmax unchanged), so both runs feed Adam rounding noise g ~ 1e-17, which Adam (eps 1e-9) turns into steps of
// about lr·g/eps ~ 1e-10 that differ between summation orders. Those elements are held to 1e-8 instead.
void check_close(const Run& got, const Run& want) {
  REQUIRE(got.weights.size() == want.weights.size());
  for (size_t t = 0; t < want.weights.size(); ++t) {
    const std::vector<double>& w = want.weights[t];
    const bool in_proj_bias = want.names[t].ends_with("in_proj_bias");
    double scale = 0, worst = 0, worst_key_bias = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      scale = std::max(scale, std::abs(w[i]));
      const bool key_bias = in_proj_bias && i >= w.size() / 3 && i < 2 * w.size() / 3;
      double& bound = key_bias ? worst_key_bias : worst;
      bound = std::max(bound, std::abs(got.weights[t][i] - w[i]));
    }
    CAPTURE(want.names[t]);
    CHECK(worst <= 1e-10 * scale);
    CHECK(worst_key_bias <= 1e-8 * scale);
  }
}

// The ways the ranks' gradients can travel: DDP's default (25 MiB: this whole model is one bucket, started
// when backward reaches the first parameter), buckets of 1 KiB (dozens, most started mid-backward), and after
// backward.
const std::vector<std::pair<std::string, nn::GradientReducerOptions>> kAllreduces{
    {"one bucket", {}},
    {"1 KiB buckets", {.bucket_mb = 1.0 / 1024, .overlap = true}},
    {"no overlap", {.bucket_mb = 1.0 / 1024, .overlap = false}},
};

// Two ranks against one process on the joint batch, for each way of allreducing; rank 0 compares.
void check_against_single(const std::string& tag, int64_t steps, size_t max_tokens, int64_t update_freq,
                          int64_t single_update_freq, const std::vector<models::Example>& examples) {
  const SharedDir dir(tag);
  Run alone;
  if (job().is_root())
    alone = train(nn::Distributed::single(), dir.str("single"), steps, max_tokens, single_update_freq, examples);
  for (const auto& [name, allreduce] : kAllreduces) {
    CAPTURE(name);
    const Run together = train(job(), dir.str(name), steps, max_tokens, update_freq, examples, 0.0, 0, "", allreduce);
    if (!job().is_root()) continue;
    check_close(together, alone);
    CHECK(together.losses.size() == static_cast<size_t>(steps));
  }
}

}  // namespace

TEST_SUITE("collective") {
TEST_CASE("gradient reducer: buckets start during the armed backward only, and sum what a blocking allreduce sums") {
  REQUIRE(job().size() == 2);
  default_generator().manual_seed(2024);
  const auto model = models::make_model(tiny_config(0.0), default_generator());
  model->to(DType::f64);
  const nn::FlatParameters flat(*model);
  job().broadcast_parameters(flat);
  // Each rank its own sentences; two micro-batches, as --update-freq 2.
  const std::vector<models::Example>& train = copy_data().train;
  const size_t first = static_cast<size_t>(job().rank()) * 8;
  const std::vector<models::TensorBatch> batches{models::make_tensor_batch(train, {first, first + 1, first + 2}),
                                                 models::make_tensor_batch(train, {first + 3, first + 4})};
  auto backward = [&](const models::TensorBatch& batch) {
    const Tensor logits = model->forward(batch.src, batch.tgt_in);
    cross_entropy(reshape(logits, {-1, logits.size(-1)}), reshape(batch.tgt_out, {-1})).backward();
  };
  // What the sum must be: both micro-batches accumulated, then one blocking allreduce of a copy.
  flat.zero_grad();
  for (const models::TensorBatch& batch : batches) backward(batch);
  std::vector<double> want = flat.grad().to_vector<double>();
  job().allreduce_sum(want);

  for (const auto& [name, allreduce] : kAllreduces) {
    CAPTURE(name);
    nn::GradientReducer reducer(job(), flat, allreduce);
    flat.zero_grad();
    backward(batches[0]);  // accumulating: unarmed, nothing is sent
    CHECK(reducer.started_during_backward() == 0);
    reducer.arm();
    backward(batches[1]);
    // Every parameter is reached, so with overlap every bucket has started by the end of backward.
    CHECK(reducer.started_during_backward() == (allreduce.overlap ? reducer.buckets().size() : 0));
    reducer.finish();
    if (name == "one bucket")
      CHECK(reducer.buckets().size() == 1);
    else
      CHECK(reducer.buckets().size() > 10);
    CHECK(flat.grad().to_vector<double>() == want);
  }

  // Two backward passes in one armed window would send the first one's gradients: refused by name, on both
  // ranks alike, and finish() still completes what was started.
  nn::GradientReducer reducer(job(), flat, {.bucket_mb = 1.0 / 1024, .overlap = true});
  reducer.arm();
  backward(batches[0]);
  const std::string message = testing::message_of<nn::DistributedError>([&] { backward(batches[1]); });
  reducer.finish();
  CHECK(message.starts_with(fmt::format("GradientReducer: rank {}: parameter '", job().rank())));
  CHECK(message.ends_with("' was reported ready twice while armed: arm() covers the one backward that completes "
                          "the step's gradients"));
}

TEST_CASE("data parallel: 2 ranks x 3 steps equal 1 process on the joint batch (f64)") {
  REQUIRE(job().size() == 2);
  check_against_single("joint", 3, 64, 1, 1, copy_data().train);
}

TEST_CASE("data parallel: --update-freq 2 on 2 ranks equals --update-freq 2 in 1 process") {
  check_against_single("update-freq", 3, 64, 2, 2, copy_data().train);
}

TEST_CASE("data parallel: uneven shares and batches of one sentence (one rank gets none)") {
  // 40 tokens give batches of 3..13 sentences, most of them odd; 8 tokens give one sentence per batch.
  check_against_single("uneven", 3, 40, 1, 1, copy_data().train);
  check_against_single("singletons", 3, 8, 1, 1, copy_data().train);
  // Fewer training sentences than ranks: one sentence in all.
  const std::vector<models::Example> one(copy_data().train.begin(), copy_data().train.begin() + 1);
  check_against_single("one-sentence", 3, 64, 1, 1, one);
}

TEST_CASE("data parallel: resuming with the same ranks reproduces the losses bit for bit, with dropout") {
  const SharedDir dir("resume");
  const Run straight = train(job(), dir.str("a"), 6, 64, 1, copy_data().train, 0.1, 3);
  train(job(), dir.str("b"), 3, 64, 1, copy_data().train, 0.1, 3);
  const Run resumed = train(job(), dir.str("c"), 6, 64, 1, copy_data().train, 0.1, 3, dir.str("b/last.safetensors"));
  CHECK(resumed.losses == straight.losses);
  CHECK(resumed.weights == straight.weights);
}

TEST_CASE("data parallel: a checkpoint of another process count is refused with a clear message") {
  const SharedDir dir("other-n");
  if (job().is_root()) train(nn::Distributed::single(), dir.str("one"), 2, 64, 1, copy_data().train);
  SharedDir::barrier();
  const std::string path = dir.str("one/last.safetensors");
  const std::string message = testing::message_of<ValueError>(
      [&] { train(job(), dir.str("two"), 4, 64, 1, copy_data().train, 0.0, 0, path); });
  CHECK(message == "resume: " + path + " was written by a job of 1 process(es), this one has 2: resume it with "
                   "mpirun -np 1 (each rank's share of the batches and its random stream belong to that count), or "
                   "start a new run");
}
// Not part of the collective run (skipped): the launch suite starts it under mpirun with --no-skip and expects
// the job to end. Rank 1 starts only the first bucket's allreduce (its backward reaches the last parameter
// alone), lets rank 0 settle into MPI_Waitall for the others, and dies with SIGKILL.
TEST_CASE("fault: a rank dies mid-allreduce while the other waits in MPI_Waitall" * doctest::skip()) {
  REQUIRE(job().size() == 2);
  std::vector<Tensor> params;
  for (int i = 0; i < 4; ++i) params.push_back(ones({1024}, DType::f64).requires_grad_());
  const nn::FlatParameters flat(params);
  nn::GradientReducer reducer(job(), flat, {.bucket_mb = 8.0 / 1024, .overlap = true});  // one parameter each
  REQUIRE(reducer.buckets().size() == 4);
  reducer.arm();
  if (job().rank() == 1) {
    sum(params.back()).backward();
    fmt::print(stderr, "rank 1: {} of 4 buckets started; dying\n", reducer.started_during_backward());
    std::this_thread::sleep_for(std::chrono::seconds(2));
    std::raise(SIGKILL);
  }
  Tensor loss = sum(params[0]);
  for (size_t i = 1; i < params.size(); ++i) loss = loss + sum(params[i]);
  loss.backward();
  fmt::print(stderr, "rank 0: {} of 4 buckets started; waiting in MPI_Waitall\n", reducer.started_during_backward());
  try {
    reducer.finish();
  } catch (const nn::DistributedError& e) {
    job().abort("gradformer-mpi-tests", e.what());  // as the programs do
  }
  FAIL("rank 0's allreduce finished although rank 1 never started three of its four buckets");
}
}  // TEST_SUITE("collective")

namespace {

// Runs a shell command, returning its exit status and its combined output.
std::pair<int, std::string> shell(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

const std::string kMpirun = "mpirun --allow-run-as-root --oversubscribe -np 2 ";
const std::string kTrainFlags = " --task copy --max-train-sentences 400 --tokenizer word --max-tokens 512 --warmup 10 "
                                "--valid-every 3 --valid-bleu-sentences 0 --threads 1 --dropout 0.1";

// Starts `command` through the shell with its output to `log`; returns the shell's pid, which execs the command.
pid_t spawn(const std::string& command, const std::string& log) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string line = "exec " + command + " >" + log + " 2>&1";
    ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Waits up to `limit` for `pid` to end; kills it if it has not. Returns whether it ended by itself, its status
// and the seconds waited.
struct Ending {
  bool by_itself = false;
  int status = 0;
  double seconds = 0;
};
Ending wait_for_exit(pid_t pid, std::chrono::seconds limit) {
  const auto start = std::chrono::steady_clock::now();
  Ending ending;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &ending.status, WNOHANG)) == 0 && std::chrono::steady_clock::now() - start < limit)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ending.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ending.by_itself = done == pid;
  if (!ending.by_itself) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &ending.status, 0);
  }
  return ending;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The child of `parent` whose environment says it is MPI rank `rank`, or -1.
pid_t find_rank(pid_t parent, int rank) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 2));
    char state;
    pid_t ppid = 0;
    fields >> state >> ppid;
    if (ppid != parent) continue;
    std::ifstream environ(entry.path() / "environ");
    std::string variable;
    while (std::getline(environ, variable, '\0'))
      if (variable == "OMPI_COMM_WORLD_RANK=" + std::to_string(rank)) return std::stoi(name);
  }
  return -1;
}

}  // namespace

TEST_SUITE("launch") {
TEST_CASE("mpirun: a rank killed mid-training ends the job within 30 s; the checkpoint loads and resumes") {
  const std::string dir = (std::filesystem::temp_directory_path() / fmt::format("gradformer-mpi-kill-{}", ::getpid())).string();
  std::filesystem::remove_all(dir);
  const std::string log = dir + ".log";
  const pid_t mpirun = spawn(kMpirun + GRADFORMER_TRAIN_PROGRAM + kTrainFlags + " --max-steps 100000 --out " + dir, log);
  // Wait for the first checkpoint (step 3), then for a later step so that the kill lands mid-training.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(dir + "/last.safetensors") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(std::filesystem::exists(dir + "/last.safetensors"));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const pid_t victim = find_rank(mpirun, 1);
  REQUIRE(victim > 0);
  ::kill(victim, SIGKILL);
  const Ending ending = wait_for_exit(mpirun, std::chrono::seconds(30));
  CAPTURE(ending.seconds);
  REQUIRE(ending.by_itself);
  CHECK(!(WIFEXITED(ending.status) && WEXITSTATUS(ending.status) == 0));

  const nn::LoadedCheckpoint saved = nn::read_checkpoint_config(dir + "/last.safetensors");
  CHECK(saved.state.step % 3 == 0);
  const auto [code, output] = shell(kMpirun + GRADFORMER_TRAIN_PROGRAM + kTrainFlags + " --out " + dir + "/resumed" +
                                    " --resume " + dir + "/last.safetensors --max-steps " +
                                    std::to_string(saved.state.step + 2));
  CAPTURE(output);
  CHECK(code == 0);
  CHECK(output.find(fmt::format("resumed from {}/last.safetensors at step {}", dir, saved.state.step)) !=
        std::string::npos);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(log);
}

TEST_CASE("mpirun: a rank that dies mid-allreduce, while the other waits in MPI_Waitall, ends the job within 30 s") {
  const std::string log =
      (std::filesystem::temp_directory_path() / fmt::format("gradformer-mpi-dying-{}.log", ::getpid())).string();
  const pid_t mpirun = spawn(kMpirun + std::filesystem::read_symlink("/proc/self/exe").string() +
                                 " --no-version --no-colors --no-skip -tc='fault: a rank dies mid-allreduce*'",
                             log);
  // Time from rank 1's last words, which come 2 s before its death, to the end of the job.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (read_text(log).find("dying") == std::string::npos && std::chrono::steady_clock::now() < deadline &&
         ::waitpid(mpirun, nullptr, WNOHANG) == 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const Ending ending = wait_for_exit(mpirun, std::chrono::seconds(32));
  const std::string output = read_text(log);
  CAPTURE(output);
  CAPTURE(ending.seconds);
  CHECK(output.find("rank 1: 1 of 4 buckets started; dying") != std::string::npos);
  CHECK(output.find("rank 0: 4 of 4 buckets started; waiting in MPI_Waitall") != std::string::npos);
  REQUIRE(ending.by_itself);
  CHECK(!(WIFEXITED(ending.status) && WEXITSTATUS(ending.status) == 0));
  CHECK(output.find("finished although rank 1") == std::string::npos);
  std::filesystem::remove(log);
}

TEST_CASE("mpirun: an error on the ranks ends the job with a message naming the rank and the reason") {
  const auto [code, output] =
      shell(kMpirun + GRADFORMER_TRAIN_PROGRAM + " --task tsv:/nonexistent/corpus.tsv --out /nonexistent/out");
  CAPTURE(output);
  CHECK(code != 0);
  CHECK(output.find("gradformer-train: error: rank ") != std::string::npos);
  CHECK(output.find(" of 2: tsv /nonexistent/corpus.tsv: cannot open for reading") != std::string::npos);
  CHECK(output.find("; ending the job") != std::string::npos);
}

TEST_CASE("gradformer-train: --update-freq 0 is refused with a message naming the flag") {
  const auto [code, output] = shell(std::string(GRADFORMER_TRAIN_PROGRAM) + " --update-freq 0");
  CAPTURE(output);
  CHECK(code == 2);
  CHECK(output.find("gradformer-train: error: --update-freq: expected an integer >= 1, got '0' (see --help)") !=
        std::string::npos);
}

TEST_CASE("gradformer-train: --version says MPI is compiled in") {
  const auto [code, output] = shell(std::string(GRADFORMER_TRAIN_PROGRAM) + " --version");
  CHECK(code == 0);
  CHECK(output == "gradformer-train 0.1.0 (MPI compiled in)\n");
}
}  // TEST_SUITE("launch")

int main(int argc, char** argv) {
  use_openblas_kernels_for_this_cpu(argv);
  doctest::Context context;
  const bool launched = nn::launcher_process_count() > 1;
  try {
    if (launched) set_num_threads(job().threads_per_rank(0));
  } catch (const std::exception& e) {
    fmt::print(stderr, "gradformer-mpi-tests: error: {}\n", e.what());
    return 1;
  }
  context.setOption("test-suite", launched ? "collective" : "launch");
  if (launched && !job().is_root()) context.setOption("out", "/dev/null");
  context.applyCommandLine(argc, argv);
  return context.run();
}
