// The learning-rate schedules' formulas and the checks on their arguments.
#include "nn/schedule.h"

#include "autograd/error.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace gradformer::nn {

ConstantSchedule::ConstantSchedule(double lr) : lr_(lr) {
  if (!(lr >= 0) || !std::isfinite(lr)) fail<ValueError>("ConstantSchedule", "lr {} must be finite and >= 0", lr);
}

double ConstantSchedule::lr(int64_t) const { return lr_; }

NoamSchedule::NoamSchedule(int64_t d_model, int64_t warmup_steps, double factor)
    : d_model_(d_model), warmup_steps_(warmup_steps), factor_(factor) {
  if (d_model <= 0 || warmup_steps <= 0)
    fail<ValueError>("NoamSchedule", "d_model {} and warmup_steps {} must both be positive", d_model, warmup_steps);
  // A factor of 0 freezes the weights, which a user may want to try; NaN and Inf would poison them.
  if (!(factor >= 0) || !std::isfinite(factor))
    fail<ValueError>("NoamSchedule", "factor {} must be finite and >= 0", factor);
}

double NoamSchedule::lr(int64_t step) const {
  const double s = static_cast<double>(std::max<int64_t>(step, 1));
  const double warmup = static_cast<double>(warmup_steps_);
  return factor_ / std::sqrt(static_cast<double>(d_model_)) * std::min(1.0 / std::sqrt(s), s * std::pow(warmup, -1.5));
}

WarmupCosineSchedule::WarmupCosineSchedule(double peak_lr, int64_t warmup_steps, int64_t total_steps, double min_lr)
    : peak_lr_(peak_lr), warmup_steps_(warmup_steps), total_steps_(total_steps), min_lr_(min_lr) {
  if (!(peak_lr >= 0) || !(min_lr >= 0) || min_lr > peak_lr)
    fail<ValueError>("WarmupCosineSchedule", "need 0 <= min_lr <= peak_lr, got min_lr {} and peak_lr {}", min_lr,
                     peak_lr);
  if (warmup_steps < 0 || total_steps < warmup_steps)
    fail<ValueError>("WarmupCosineSchedule", "need 0 <= warmup_steps <= total_steps, got {} and {}", warmup_steps,
                     total_steps);
}

double WarmupCosineSchedule::lr(int64_t step) const {
  if (step < warmup_steps_)
    return peak_lr_ * static_cast<double>(std::max<int64_t>(step, 0)) / static_cast<double>(warmup_steps_);
  if (step >= total_steps_) return min_lr_;
  const double progress =
      static_cast<double>(step - warmup_steps_) / static_cast<double>(total_steps_ - warmup_steps_);
  return min_lr_ + 0.5 * (peak_lr_ - min_lr_) * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace gradformer::nn
