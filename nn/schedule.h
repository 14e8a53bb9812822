// Learning-rate schedules: a pure function from the step number (counted from 1, the first optimizer step)
// to a learning rate, which the training loop hands to Optimizer::set_lr before each step. Stateless, so
// resuming from a checkpoint needs only the step count.
#pragma once

#include <cstdint>

namespace gradformer::nn {

class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual double lr(int64_t step) const = 0;
};

class ConstantSchedule : public LRSchedule {
 public:
  explicit ConstantSchedule(double lr);
  double lr(int64_t step) const override;

 private:
  double lr_;
};

// "Attention Is All You Need", 5.3: factor · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5): a linear
// rise for warmup_steps, then decay as 1/sqrt(step). Steps below 1 are taken as 1. d_model is the width of the
// model being trained (Trainer passes the one in its model configuration); a factor of 0 is allowed (frozen weights).
class NoamSchedule : public LRSchedule {
 public:
  NoamSchedule(int64_t d_model, int64_t warmup_steps, double factor = 1.0);
  double lr(int64_t step) const override;

 private:
  int64_t d_model_;
  int64_t warmup_steps_;
  double factor_;
};

// peak_lr · step / warmup_steps up to warmup_steps, then a half cosine from peak_lr down to min_lr at
// total_steps, and min_lr after it.
class WarmupCosineSchedule : public LRSchedule {
 public:
  WarmupCosineSchedule(double peak_lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);
  double lr(int64_t step) const override;

 private:
  double peak_lr_;
  int64_t warmup_steps_;
  int64_t total_steps_;
  double min_lr_;
};

}  // namespace gradformer::nn
