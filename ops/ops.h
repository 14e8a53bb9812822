// Every op of gradformer, for users and for the op table.
#pragma once

#include "autograd/engine.h"
#include "autograd/tensor.h"
#include "ops/attention.h"
#include "ops/autocast.h"
#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/matmul.h"
#include "ops/normalization.h"
#include "ops/reduce.h"
#include "ops/selection.h"
#include "ops/shape.h"
#include "ops/threads.h"
