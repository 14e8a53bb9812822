// Elementwise ops with NumPy/PyTorch broadcasting: arithmetic, unary math, activations, maximum/minimum,
// comparisons and logical ops. Both operands must have the same dtype (no implicit promotion: mixing f32 and
// f64 throws a DTypeError naming the op and both dtypes). Comparisons return bool masks and carry no gradient;
// they are named functions rather than operators because `a == b` on handles would read as an identity test.
// Selecting by mask (where, masked_fill) and by index is in selection.h.
#pragma once

#include "autograd/tensor.h"

namespace gradformer {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);

// Scalar variants: the scalar is taken in the tensor's dtype.
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor rsub(double a, const Tensor& b);  // a - b
Tensor rdiv(double a, const Tensor& b);  // a / b

// Unary math and activations, f32 or f64.
Tensor abs(const Tensor& x);    // gradient sign(x), 0 at 0 as PyTorch
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);  // 1 / sqrt(x)
Tensor pow(const Tensor& x, double exponent);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);   // gradient 0 at 0 as PyTorch

// PyTorch's `approximate` argument of gelu: "none" is x * Phi(x) with the erf, "tanh" the tanh approximation.
enum class GeluApproximation { none, tanh };
Tensor gelu(const Tensor& x, GeluApproximation approximate = GeluApproximation::none);
// log(1 + exp(x)) with PyTorch's defaults beta = 1, threshold = 20: above the threshold it is x itself,
// which keeps large inputs finite.
Tensor softplus(const Tensor& x);

// x · sigmoid(x) (torch.nn.functional.silu, also called swish): SwiGLU's gate.
Tensor silu(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor erf(const Tensor& x);    // the Gauss error function, 2/sqrt(pi) ∫₀ˣ e^(-t²) dt
Tensor log1p(const Tensor& x);  // log(1 + x), exact for small x
Tensor expm1(const Tensor& x);  // exp(x) - 1, exact for small x

// Elementwise max/min with broadcasting. Where a and b tie, each receives half the gradient, as PyTorch.
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

// Comparisons into bool masks of the broadcast shape; any dtype, both operands the same dtype. The scalar
// variants compare in the tensor's dtype for f32/f64 (as PyTorch's wrapped scalars) and in double otherwise.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);

// Logic on bool masks (a DTypeError for any other dtype), with broadcasting.
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator-(double a, const Tensor& b) { return rsub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
inline Tensor operator/(double a, const Tensor& b) { return rdiv(a, b); }

}  // namespace gradformer
