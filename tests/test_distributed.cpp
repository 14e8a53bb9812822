// nn::Distributed in one process (the collectives on real ranks are in tests/mpi/): single() leaves values
// alone, threads follow the request, and a launch of several processes without MPI is refused by name.
#include "nn/distributed.h"
#include "nn/layers.h"

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
  one.allreduce_gradients(flat);
  one.check_same_parameters(flat, "a test");
  CHECK(flat.data().to_vector<float>() == before);
  CHECK(flat.grad().at({0}) == 1.5);
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
