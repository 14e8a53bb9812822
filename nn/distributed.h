// Distributed: data-parallel training over MPI, in the manner of PyTorch's DistributedDataParallel and Horovod.
// This is the one place that calls the MPI C API; nothing else in gradformer includes <mpi.h>. A program makes
// one world() (which joins the job when an MPI launcher such as mpirun started it) and hands it to the trainer;
// single() is the same class for one process, where every collective is a no-op, so a training loop has one
// code path whether it runs alone or as one of N ranks.
//
// What the collectives guarantee: broadcast_parameters leaves every rank with rank 0's weights and checks them
// by checksum; a GradientReducer sums the flat gradient buffer (nn/flat_parameters.h) over the ranks in buckets,
// each bucket's MPI_Iallreduce started during backward as soon as its gradients are final (DDP's reducer), and
// waited for before the optimizer step. Every MPI call runs under
// MPI_ERRORS_RETURN, and a failing one throws DistributedError naming the call and the rank; a program that
// catches any error on a rank of a job of several calls abort(), which ends the whole job (MPI_Abort) instead
// of leaving the others waiting in a collective. Not here: how a batch is split (models/trainer.cpp), threads
// of the kernels (ops/threads.h), any transport of our own.
#pragma once

#include "autograd/engine.h"
#include "autograd/error.h"
#include "nn/flat_parameters.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
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

struct GradientReducerOptions {
  double bucket_mb = 25;  // a bucket closes once it holds this many MiB of gradients (DDP's bucket_cap_mb)
  bool overlap = true;    // start buckets during backward; false: all of them in finish(), after backward
};

// The gradient allreduce of data-parallel training, in the manner of DDP's Reducer. The flat gradient buffer is cut
// into buckets of about bucket_mb, filled in reverse parameter order, the order in which backward finalises the
// gradients (the last layers' first); so a bucket is a contiguous range of the buffer. While armed, the engine's
// grad-ready hook (autograd/engine.h) counts each bucket's parameters down, and a bucket whose gradients are all
// final gets its MPI_Iallreduce (sum, in place) at once, provided every bucket before it has: MPI wants the same
// order of collectives on every rank, and ranks see gradients finalised in different orders (a rank without
// data runs no backward at all). finish() starts what is left, in order (buckets holding a parameter no loss
// reached, or all of them without overlap), and waits for every one. In one process nothing is sent.
//
// Arm for the backward that completes the step's gradients only: with --update-freq K, the K-1 accumulating
// micro-batches run unarmed and send nothing (DDP's no_sync), and the K-th's backward, armed, finalises the sums.
// Between arm() and finish() nothing else may write the gradient buffer: MPI is reading and writing it.
class GradientReducer {
 public:
  // Throws ValueError for a bucket_mb outside (0, 4096], DistributedError for a bucket MPI's int count cannot
  // hold (one parameter of more than 2^31 - 1 elements).
  GradientReducer(const Distributed& distributed, const FlatParameters& flat, GradientReducerOptions options = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Installs the grad-ready hook on this thread until finish() (no-op without overlap or in one process).
  void arm();
  // Starts the buckets not started yet, waits for all, and disarms: the gradient buffer then holds the sum over
  // the ranks. Throws ValueError (check_intact) when a parameter left the buffer, DistributedError when a
  // parameter was reported ready twice while armed (two backward passes in one armed window).
  void finish();

  // The buckets as element ranges [begin, end) of the flat buffer, in the order they are reduced (the first one
  // ends at the end of the buffer); with the parameter indices each holds.
  struct Bucket {
    int64_t begin = 0, end = 0;
    std::vector<size_t> parameters;
  };
  const std::vector<Bucket>& buckets() const { return buckets_; }
  // How many buckets were started by the hook, during backward, in the last armed window (for tests and the bench).
  size_t started_during_backward() const { return started_during_backward_; }

 private:
  void parameter_ready(const Tensor& leaf);
  void start(size_t bucket);
  void poll();

  const Distributed& distributed_;
  const FlatParameters& flat_;
  GradientReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const TensorImpl*, size_t> parameter_index_;
  std::vector<size_t> bucket_of_;        // by parameter index
  std::vector<size_t> pending_;          // by bucket: parameters not yet reported ready while armed
  std::vector<bool> reported_;           // by parameter index, while armed
  size_t next_bucket_ = 0;               // buckets before it have been started
  size_t started_during_backward_ = 0;
  std::optional<GradReadyHookGuard> armed_;
  struct Requests;                       // MPI_Request handles, known only to distributed.cpp
  std::unique_ptr<Requests> requests_;
};

}  // namespace gradformer::nn
