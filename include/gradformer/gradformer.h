// The whole public API of gradformer in one include: `#include <gradformer/gradformer.h>`.
//
// Tensor and engine (autograd/), every op (ops/), layers, optimizers, checkpoints (nn/), and the zoo with its
// data, decoding and training loop (models/). The headers it names keep their tree when installed
// (include/gradformer/autograd/tensor.h, ...), so a program may also include just the ones it needs. Only
// these headers and the ones they include are installed: the kernels (ops/kernels.h, ops/gemm.h, ...) and the
// op and layer tables (the gradient checker's test contract) stay internal to the tree.
#pragma once

#include "autograd/engine.h"
#include "autograd/error.h"
#include "autograd/generator.h"
#include "autograd/gradcheck.h"
#include "autograd/tensor.h"
#include "models/attention_seq2seq.h"
#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/ding.h"
#include "models/data/grammar.h"
#include "models/data/tokenizer.h"
#include "models/decode.h"
#include "models/metrics.h"
#include "models/rnn_seq2seq.h"
#include "models/seq2seq.h"
#include "models/svg.h"
#include "models/task.h"
#include "models/trainer.h"
#include "models/transformer_seq2seq.h"
#include "models/zoo.h"
#include "nn/attention.h"
#include "nn/checkpoint.h"
#include "nn/distributed.h"
#include "nn/flat_parameters.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/rnn.h"
#include "nn/safetensors.h"
#include "nn/schedule.h"
#include "nn/transformer.h"
#include "ops/ops.h"
