// nn::Distributed in one process (the collectives on real ranks are in tests/mpi/): single() leaves values
// alone, threads follow the request, a launch of several processes without MPI is refused by name, and the
// gradient reducer's buckets are laid out as DDP's (reverse parameter order, a size cap).
#include "nn/distributed.h"
#include "nn/layers.h"
#include "ops/ops.h"

#include "helpers.h"

#include <doctest/doctest.h>

#include <thread>

using namespace gradformer;

TEST_CASE("distributed: one process is rank 0 of 1 and every collective leaves the values as they are") {
  const nn::Distributed& one = nn::Distributed::single();
  CHECK(one.rank() == 0);
  CHECK(one.size() == 1);
  CHECK(one.is_root());
  std::array<int64_t, 2> counts{3, 4};
  one.allreduce_sum(counts);
  CHECK(counts == std::array<int64_t, 2>{3, 4});
  std::array<double, 1> value{2.5};
  one.broadcast(value);
  one.allreduce_sum(value);
  CHECK(value[0] == 2.5);
  const std::array<uint64_t, 2> words{7, 9};
  CHECK(one.gather(words) == std::vector<uint64_t>{7, 9});
  nn::Linear layer(2, 3);
  nn::FlatParameters flat(layer);
  flat.grad().fill_(1.5);
  const std::vector<float> before = flat.data().to_vector<float>();
  one.broadcast_parameters(flat);
  nn::GradientReducer reducer(one, flat);
  reducer.arm();
  sum(layer.forward(ones({1, 2}))).backward();
  reducer.finish();
  one.check_same_parameters(flat, "a test");
  CHECK(flat.data().to_vector<float>() == before);
  CHECK(flat.grad().at({0}) == 2.5);  // 1.5 and the backward's 1: summed over one rank, nothing else
}

TEST_CASE("distributed: gradient buckets tile the flat buffer from its end, in reverse parameter order") {
  // Three (weight, bias) pairs: weights of 256 f32 (1 KiB), biases of 16 (64 bytes, one 64-byte line).
  std::vector<Tensor> params;
  for (int layer = 0; layer < 3; ++layer)
    for (int64_t size : {256, 16}) params.push_back(zeros({size}).requires_grad_());
  const nn::FlatParameters flat(params);
  const nn::Distributed& one = nn::Distributed::single();
  // A bucket closes once it holds 1 KiB: from the end, a bias (64 bytes), then the weight before it.
  const nn::GradientReducer reducer(one, flat, {.bucket_mb = 1.0 / 1024, .overlap = true});
  const std::vector<nn::GradientReducer::Bucket>& buckets = reducer.buckets();
  REQUIRE(buckets.size() == 3);
  CHECK(buckets[0].parameters == std::vector<size_t>{5, 4});
  CHECK(buckets[1].parameters == std::vector<size_t>{3, 2});
  CHECK(buckets[2].parameters == std::vector<size_t>{1, 0});
  CHECK(buckets[0].end == flat.numel());
  for (size_t b = 0; b + 1 < buckets.size(); ++b) CHECK(buckets[b].begin == buckets[b + 1].end);
  CHECK(buckets[2].begin == 0);
  CHECK(buckets[1].begin == flat.offsets()[2]);
  // DDP's default of 25 MiB holds this model in one bucket; a bucket smaller than any parameter holds one.
  CHECK(nn::GradientReducer(one, flat).buckets().size() == 1);
  CHECK(nn::GradientReducer(one, flat, {.bucket_mb = 1e-6, .overlap = true}).buckets().size() == params.size());
}

TEST_CASE("distributed: a bucket size outside (0, 4096] MiB is refused by name") {
  nn::Linear layer(2, 3);
  const nn::FlatParameters flat(layer);
  for (double mb : {0.0, -1.0, 5000.0}) {
    CAPTURE(mb);
    CHECK(testing::message_of<ValueError>([&] {
            nn::GradientReducer(nn::Distributed::single(), flat, {.bucket_mb = mb, .overlap = true});
          }) == fmt::format("GradientReducer: bucket_mb (--bucket-mb) is {}; it must be in (0, 4096]", mb));
  }
}

TEST_CASE("distributed: threads per rank are the request, else the cores shared by the ranks on the machine") {
  const nn::Distributed& one = nn::Distributed::single();
  CHECK(one.threads_per_rank(3) == 3);
  CHECK(one.threads_per_rank(0) == static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

TEST_CASE("distributed: several processes launched for a build without MPI are refused") {
  CHECK(testing::message_of<nn::DistributedError>([] { nn::check_launch(2, false); }) ==
        "distributed: started by an MPI launcher as one of 2 processes, but this program was built without MPI "
        "(install libopenmpi-dev and rebuild with meson option -Dmpi=enabled); the processes would each train a "
        "model of their own");
  nn::check_launch(1, false);
  nn::check_launch(2, true);
  CHECK(nn::launcher_process_count() == 1);  // the unit tests are not started by mpirun
}
