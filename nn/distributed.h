// Distributed: data-parallel training over MPI, in the manner of PyTorch's DistributedDataParallel and Horovod.
// This is the one place that calls the MPI C API; nothing else in gradformer includes <mpi.h>. A program makes
// one world() (which joins the job when an MPI launcher such as mpirun started it) and hands it to the trainer;
// single() is the same class for one process, where every collective is a no-op, so a training loop has one
// code path whether it runs alone or as one of N ranks.
//
// What the collectives guarantee: broadcast_parameters leaves every rank with rank 0's weights and checks them
// by checksum; allreduce_gradients sums the flat gradient buffer (nn/flat_parameters.h) over the ranks in
// buckets of kBucketBytes with blocking MPI_Allreduce, after backward. Every MPI call runs under
// MPI_ERRORS_RETURN, and a failing one throws DistributedError naming the call and the rank; a program that
// catches any error on a rank of a job of several calls abort(), which ends the whole job (MPI_Abort) instead
// of leaving the others waiting in a collective. Not here: how a batch is split (models/trainer.cpp), threads
// of the kernels (ops/threads.h), any transport of our own.
#pragma once

#include "autograd/error.h"
#include "nn/flat_parameters.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::nn {

// An MPI call that failed, a misuse of a launcher, or ranks that disagree (different weights, different
// configurations). The message names the MPI call or the check, and the rank.
class DistributedError : public Error { using Error::Error; };

// Whether this build links MPI (meson option `mpi`).
bool mpi_compiled();
// How many processes the launcher that started this one says the job has (Open MPI's OMPI_COMM_WORLD_SIZE,
// PMIx's or Hydra's PMI_SIZE), 1 when no launcher started it.
int launcher_process_count();
// Throws DistributedError when a launcher started `processes` > 1 of us but `with_mpi` is false: each process
// would train a model of its own and all would write the same checkpoints. world() checks this build's case;
// the function is separate so that its message can be tested in a build with MPI too.
void check_launch(int processes, bool with_mpi);

class Distributed {
 public:
  static constexpr int64_t kBucketBytes = int64_t{8} << 20;

  // The job this process belongs to: MPI_COMM_WORLD when an MPI launcher started it (MPI is initialised on the
  // first call and finalised at exit), otherwise one process that never touches MPI.
  static Distributed& world();
  // One process, whatever launched it: the reference a test compares a job of several ranks against.
  static Distributed& single();

  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;
  ~Distributed();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // Ranks on this machine (MPI_COMM_TYPE_SHARED), for the thread count.
  int local_size() const { return local_size_; }
  // Kernel threads for each rank: `requested` when positive, else the machine's cores divided by the ranks on
  // it (at least 1), so that N ranks on one machine do not oversubscribe it.
  int threads_per_rank(int requested) const;

  // Overwrites every rank's parameters with rank 0's, then checks them with check_same_parameters.
  void broadcast_parameters(const FlatParameters& flat) const;
  // Throws DistributedError on every rank when the ranks' parameter buffers differ (a 64-bit FNV-1a checksum
  // of the bytes, compared by allreducing its minimum and maximum); `when` says at which point ("after step 6").
  void check_same_parameters(const FlatParameters& flat, std::string_view when) const;
  // Sums the gradient buffer over the ranks, in place, bucket by bucket.
  void allreduce_gradients(const FlatParameters& flat) const;
  // Element-wise sums over the ranks, in place (token counts, losses, flags).
  void allreduce_sum(std::span<int64_t> values) const;
  void allreduce_sum(std::span<double> values) const;
  // Rank 0's values to every rank, in place.
  void broadcast(std::span<double> values) const;
  // Every rank's `words` (the same count on each) concatenated in rank order on rank 0; empty on the others.
  std::vector<uint64_t> gather(std::span<const uint64_t> words) const;

  // Prints "<program>: error: rank R of N: <reason>; ending the job" to stderr and ends every rank with
  // MPI_Abort (exit status 1). For a single process it prints "<program>: error: <reason>" and exits 1.
  [[noreturn]] void abort(std::string_view program, std::string_view reason) const;

  // "MPI (Open MPI v4.1.4), rank 0 of 2" or "one process (built without MPI)".
  std::string describe() const;

 private:
  explicit Distributed(bool join);

  int rank_ = 0, size_ = 1, local_size_ = 1;
  [[maybe_unused]] bool joined_ = false;  // read only where MPI is compiled in
};

}  // namespace gradformer::nn
