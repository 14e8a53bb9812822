// The MPI calls of gradformer, all of them. Built with GRADFORMER_WITH_MPI when meson found MPI (option `mpi`);
// without it, the same class exists for one process and every collective returns at once.
#include "nn/distributed.h"


#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
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

void Distributed::allreduce_gradients(const FlatParameters& flat) const {
  flat.check_intact("allreduce_gradients");
  if (size_ == 1) return;
#ifdef GRADFORMER_WITH_MPI
  const int64_t element = static_cast<int64_t>(dtype_size(flat.dtype()));
  const int64_t bucket = kBucketBytes / element;
  std::byte* data = flat.grad().raw_data();
  for (int64_t start = 0; start < flat.numel(); start += bucket)
    check(MPI_Allreduce(MPI_IN_PLACE, data + start * element, static_cast<int>(std::min(bucket, flat.numel() - start)),
                        mpi_type(flat.dtype()), MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce", rank_);
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

}  // namespace gradformer::nn
