// TransformersBackend: the study on the paper's own stack — Hugging Face
// transformers + bitsandbytes, on the user's GPU or CPU — through a Python
// worker process (python/bioquant_worker.py, installed next to the binary).
//
// One worker per precision label, started when the study opens the label and
// killed when it is done, so each precision's peak memory is its own (the
// worker resets the CUDA peak statistics, or the process's peak RSS on the
// CPU, just before loading). The two speak one JSON object per line over the
// worker's stdin/stdout (protocol in the worker's docstring and the README):
// hello (versions, device), load, render (the tokenizer's own
// apply_chat_template), generate (one result line per request as it
// finishes), memory.
//
// A worker that dies (a crash, the OOM killer) is started again and given
// the requests of the call that had not finished, at most max_restarts times
// per call; finished results were already handed to the study (stored), so
// nothing is generated twice. Errors the worker reports (ImportError, CUDA
// out of memory, a precision the device does not support) become one-line
// Errors naming their type.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace bioquant {

struct TransformersBackendOptions {
  std::string model_dir;
  // Every label the study will open: f32, bf16, f16, int8 / llm-int8 (both
  // load_in_8bit=True: LLM.int8), nf4, fp4 (4-bit with double quant).
  std::vector<std::string> precisions;
  std::string python;           // "" = DefaultWorkerPython()
  std::string worker;           // the worker script; "" = FindWorkerScript()
  std::string device = "auto";  // auto | cpu | cuda
  std::string compute_dtype = "bf16";  // bnb compute dtype: bf16 | f16 | f32
  // What the peak-memory column holds on CUDA: max_memory_allocated (the
  // paper's figure) or max_memory_reserved (what the caching allocator
  // held). The CPU has one figure, the worker's peak RSS.
  std::string gpu_memory = "allocated";  // allocated | reserved
  int threads = 0;                       // torch threads; 0 = torch's default
  int max_restarts = 2;                  // per Generate call
  // Polled while waiting for the worker (Ctrl-C): when set, the worker is
  // killed and Generate throws Error("interrupted").
  const std::atomic<bool>* stop = nullptr;
  // Where version and restart notes go (one line each); null = stderr.
  std::function<void(const std::string&)> log;
};

// The Python the worker runs on: the project virtual environment of
// scripts/pystack.sh ($BIOQUANT_VENV, else ${XDG_CACHE_HOME:-~/.cache}/
// bioquant/venv, when it has bin/python and its stamp), else "python3".
std::string DefaultWorkerPython();

// bioquant_worker.py: $BIOQUANT_WORKER, else beside the executable (the
// build tree and `cmake --install`'s bin/), ../share/bioquant/ from the
// executable, then the source tree this binary was built from. Throws Error
// naming --worker when none exists.
std::string FindWorkerScript();

// Checks the options (model directory, labels, python, worker script) and
// throws Error naming the flag; starts nothing.
std::unique_ptr<BackendSet> MakeTransformersBackendSet(
    const TransformersBackendOptions& o);

}  // namespace bioquant
