// The MPI calls of gradformer, all of them. Built with GRADFORMER_WITH_MPI when meson found MPI (option `mpi`);
// without it, the same class exists for one process and every collective returns at once.
#include "nn/distributed.h"


#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <cstdlib>
#include <string>
#include <thread>

#ifdef GRADFORMER_WITH_MPI
// The C API only: the deprecated C++ bindings' headers do not compile cleanly at warning_level=3.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace gradformer::nn {
namespace {

#ifdef GRADFORMER_WITH_MPI
uint64_t fnv1a(const std::byte* data, size_t n) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) hash = (hash ^ static_cast<uint64_t>(data[i])) * 1099511628211ull;
  return hash;
}

// Throws DistributedError "<call>: rank R: <MPI's error string>" for a code other than MPI_SUCCESS.
void check(int code, std::string_view call, int rank) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  fail<DistributedError>(call, "rank {}: {} (MPI error {})", rank, std::string_view(text, static_cast<size_t>(length)),
                         code);
}

MPI_Datatype mpi_type(DType dtype) { return dtype == DType::f64 ? MPI_DOUBLE : MPI_FLOAT; }
#endif

}  // namespace

bool mpi_compiled() {
#ifdef GRADFORMER_WITH_MPI
  return true;
#else
  return false;
#endif
}

int launcher_process_count() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"})
    if (const char* value = std::getenv(name)) return std::max(1, std::atoi(value));
  return 1;
}

void check_launch(int processes, bool with_mpi) {
  if (processes > 1 && !with_mpi)
    fail<DistributedError>("distributed", "started by an MPI launcher as one of {} processes, but this program was "
                           "built without MPI (install libopenmpi-dev and rebuild with meson option -Dmpi=enabled); "
                           "the processes would each train a model of their own", processes);
}

Distributed& Distributed::world() {
  static Distributed world(true);
  return world;
}

Distributed& Distributed::single() {
  static Distributed single(false);
  return single;
}

Distributed::Distributed(bool join) {
  if (!join) return;
  const int processes = launcher_process_count();
  check_launch(processes, mpi_compiled());
#ifdef GRADFORMER_WITH_MPI
  if (processes == 1) return;
  int provided = 0;
  // Only the main thread calls MPI; OpenMP's workers never do.
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    fail<DistributedError>("MPI_Init_thread", "could not join the job of {} processes", processes);
  joined_ = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank", rank_);
  check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size", rank_);
  MPI_Comm local;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local),
        "MPI_Comm_split_type", rank_);
  check(MPI_Comm_size(local, &local_size_), "MPI_Comm_size", rank_);
  MPI_Comm_free(&local);
#endif
}

Distributed::~Distributed() {
#ifdef GRADFORMER_WITH_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (joined_ && !finalized) MPI_Finalize();
#endif
}

int Distributed::threads_per_rank(int requested) const {
  if (requested > 0) return requested;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / local_size_);
}

void Distributed::broadcast_parameters(const FlatParameters& flat) const {
  flat.check_intact("broadcast_parameters");
#ifdef GRADFORMER_WITH_MPI
  if (size_ > 1) {
    const size_t nbytes = static_cast<size_t>(flat.numel()) * dtype_size(flat.dtype());
    constexpr size_t chunk = size_t{1} << 30;
    for (size_t start = 0; start < nbytes; start += chunk)
      check(MPI_Bcast(flat.data().raw_data() + start, static_cast<int>(std::min(chunk, nbytes - start)), MPI_BYTE, 0,
                      MPI_COMM_WORLD),
            "MPI_Bcast", rank_);
  }
#endif
  check_same_parameters(flat, "the broadcast of rank 0's weights");
}

void Distributed::check_same_parameters([[maybe_unused]] const FlatParameters& flat,
                                        [[maybe_unused]] std::string_view when) const {
  if (size_ == 1) return;
#ifdef GRADFORMER_WITH_MPI
  const uint64_t sum =
      fnv1a(flat.data().raw_data(), static_cast<size_t>(flat.numel()) * dtype_size(flat.dtype()));
  uint64_t low = 0, high = 0;
  check(MPI_Allreduce(&sum, &low, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce", rank_);
  check(MPI_Allreduce(&sum, &high, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce", rank_);
  if (low != high)
    fail<DistributedError>("distributed", "rank {}: the ranks hold different weights after {} (checksums from "
                           "{:016x} to {:016x}; this rank {:016x})", rank_, when, low, high, sum);
#endif
}

void Distributed::allreduce_sum([[maybe_unused]] std::span<int64_t> values) const {
  if (size_ == 1) return;
#ifdef GRADFORMER_WITH_MPI
  check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_INT64_T, MPI_SUM,
                      MPI_COMM_WORLD),
        "MPI_Allreduce", rank_);
#endif
}

void Distributed::allreduce_sum([[maybe_unused]] std::span<double> values) const {
  if (size_ == 1) return;
#ifdef GRADFORMER_WITH_MPI
  check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM,
                      MPI_COMM_WORLD),
        "MPI_Allreduce", rank_);
#endif
}

void Distributed::broadcast([[maybe_unused]] std::span<double> values) const {
  if (size_ == 1) return;
#ifdef GRADFORMER_WITH_MPI
  check(MPI_Bcast(values.data(), static_cast<int>(values.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD), "MPI_Bcast", rank_);
#endif
}

std::vector<uint64_t> Distributed::gather(std::span<const uint64_t> words) const {
  if (size_ == 1) return {words.begin(), words.end()};
  std::vector<uint64_t> all;
#ifdef GRADFORMER_WITH_MPI
  if (rank_ == 0) all.resize(words.size() * static_cast<size_t>(size_));
  check(MPI_Gather(words.data(), static_cast<int>(words.size()), MPI_UINT64_T, all.data(),
                   static_cast<int>(words.size()), MPI_UINT64_T, 0, MPI_COMM_WORLD),
        "MPI_Gather", rank_);
#endif
  return all;
}

void Distributed::abort(std::string_view program, std::string_view reason) const {
  if (size_ == 1) {
    fmt::print(stderr, "{}: error: {}\n", program, reason);
    std::exit(1);
  }
  fmt::print(stderr, "{}: error: rank {} of {}: {}; ending the job\n", program, rank_, size_, reason);
  std::fflush(stderr);
#ifdef GRADFORMER_WITH_MPI
  MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  std::exit(1);
}

std::string Distributed::describe() const {
  if (!mpi_compiled()) return "one process (built without MPI)";
  if (size_ == 1) return "one process (MPI compiled in, not launched by mpirun)";
#ifdef GRADFORMER_WITH_MPI
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  std::string library(version, static_cast<size_t>(length));
  library = library.substr(0, library.find(','));
  return fmt::format("MPI ({}), rank {} of {}, {} on this machine", library, rank_, size_, local_size_);
#else
  return {};
#endif
}

struct GradientReducer::Requests {
#ifdef GRADFORMER_WITH_MPI
  std::vector<MPI_Request> handles;  // one per started bucket; MPI_REQUEST_NULL once complete
#endif
};

GradientReducer::GradientReducer(const Distributed& distributed, const FlatParameters& flat,
                                 GradientReducerOptions options)
    : distributed_(distributed), flat_(flat), options_(options), requests_(std::make_unique<Requests>()) {
  if (!(options_.bucket_mb > 0 && options_.bucket_mb <= 4096))
    fail<ValueError>("GradientReducer", "bucket_mb (--bucket-mb) is {}; it must be in (0, 4096]", options_.bucket_mb);
  const std::vector<Tensor>& params = flat_.parameters();
  const std::vector<int64_t>& offsets = flat_.offsets();
  const double element_bytes = static_cast<double>(dtype_size(flat_.dtype()));
  const double cap_bytes = options_.bucket_mb * 1024 * 1024;
  bucket_of_.resize(params.size());
  Bucket bucket{.begin = flat_.numel(), .end = flat_.numel(), .parameters = {}};
  for (size_t i = params.size(); i-- > 0;) {
    parameter_index_[params[i].impl_ptr().get()] = i;
    bucket.begin = offsets[i];
    bucket.parameters.push_back(i);
    bucket_of_[i] = buckets_.size();
    if (bucket.end - bucket.begin > std::numeric_limits<int>::max())
      fail<DistributedError>("GradientReducer", "a bucket of {} elements, with parameter '{}' of shape {}, is more "
                             "than MPI's int count holds", bucket.end - bucket.begin, params[i].name(),
                             shape_str(params[i].shape()));
    if (static_cast<double>(bucket.end - bucket.begin) * element_bytes >= cap_bytes || i == 0) {
      buckets_.push_back(bucket);
      bucket = Bucket{.begin = bucket.begin, .end = bucket.begin, .parameters = {}};
    }
  }
  pending_.resize(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = buckets_[b].parameters.size();
  reported_.assign(params.size(), false);
}

// Requests still in flight here mean an exception left a step half done; the program then ends the job (every
// caller's error path aborts), so they are not waited for: a dead peer would make the wait endless.
GradientReducer::~GradientReducer() = default;

void GradientReducer::arm() {
  started_during_backward_ = 0;
  if (!options_.overlap || distributed_.size() == 1) return;
  armed_.emplace([this](const Tensor& leaf) { parameter_ready(leaf); });
}

void GradientReducer::parameter_ready(const Tensor& leaf) {
  const auto found = parameter_index_.find(leaf.impl_ptr().get());
  if (found == parameter_index_.end()) return;  // a leaf that is not one of ours
  const size_t i = found->second;
  if (reported_[i])
    fail<DistributedError>("GradientReducer", "rank {}: parameter '{}' was reported ready twice while armed: arm() "
                           "covers the one backward that completes the step's gradients", distributed_.rank(),
                           flat_.parameters()[i].name());
  reported_[i] = true;
  --pending_[bucket_of_[i]];
  while (next_bucket_ < buckets_.size() && pending_[next_bucket_] == 0) {
    start(next_bucket_++);
    ++started_during_backward_;
  }
  poll();
}

void GradientReducer::start([[maybe_unused]] size_t bucket) {
#ifdef GRADFORMER_WITH_MPI
  const Bucket& range = buckets_[bucket];
  std::byte* data = flat_.grad().raw_data() + range.begin * static_cast<int64_t>(dtype_size(flat_.dtype()));
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(range.end - range.begin), mpi_type(flat_.dtype()), MPI_SUM,
                       MPI_COMM_WORLD, &request),
        "MPI_Iallreduce", distributed_.rank());
  requests_->handles.push_back(request);
#endif
}

// Open MPI moves a non-blocking collective on only inside MPI calls; testing the requests now and then during
// backward lets the started buckets travel while the next gradients are computed.
void GradientReducer::poll() {
#ifdef GRADFORMER_WITH_MPI
  if (requests_->handles.empty()) return;
  int all_done = 0;
  check(MPI_Testall(static_cast<int>(requests_->handles.size()), requests_->handles.data(), &all_done,
                    MPI_STATUSES_IGNORE),
        "MPI_Testall", distributed_.rank());
#endif
}

void GradientReducer::finish() {
  armed_.reset();
  flat_.check_intact("GradientReducer");
  if (distributed_.size() > 1) {
    while (next_bucket_ < buckets_.size()) start(next_bucket_++);
#ifdef GRADFORMER_WITH_MPI
    check(MPI_Waitall(static_cast<int>(requests_->handles.size()), requests_->handles.data(), MPI_STATUSES_IGNORE),
          "MPI_Waitall", distributed_.rank());
    requests_->handles.clear();
#endif
  }
  next_bucket_ = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = buckets_[b].parameters.size();
  reported_.assign(reported_.size(), false);
}

}  // namespace gradformer::nn
