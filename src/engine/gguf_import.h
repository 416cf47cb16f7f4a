// GGUF -> Hugging Face checkpoint: what `bioquant import-gguf` writes and
// what `--model FILE.gguf` loads through (imported once into a cache).
//
// The checkpoint is the one transformers' own GGUF loader builds
// (`from_pretrained(dir, gguf_file=...)`): config.json from the
// `<arch>.*` hyper-parameters, every tensor dequantized (quant/ggml.h) and
// renamed to HF names, Llama's Q/K rows un-permuted from llama.cpp's
// interleaved rope layout back to HF's rotate-half one, and tokenizer.json +
// tokenizer_config.json (chat template, special tokens, BOS/EOS) from
// `tokenizer.ggml.*`. Architectures: llama, qwen2. Tokenizers: gpt2 (BPE).
#pragma once

#include <string>

namespace bioquant {

struct GgufImportOptions {
  std::string gguf_path;
  std::string out_dir;        // created; must not exist or be empty
  std::string dtype = "f32";  // f32 (exact) or bf16 (round to nearest even)
  bool quiet = true;
};

// Writes out_dir atomically (a sibling temp directory renamed into place).
// Throws Error naming the file and the problem.
void ImportGguf(const GgufImportOptions& o);

// Fingerprint of a GGUF file: header bytes, size and sampled tensor data.
std::string GgufFingerprint(const std::string& gguf_path);

// Where `--model` points. A path ending in ".gguf" (a regular file) is
// imported (f32) once into $BIOQUANT_CACHE_DIR or
// ${XDG_CACHE_HOME:-~/.cache}/bioquant, under gguf/<fingerprint>, and that
// directory is returned; anything else comes back unchanged.
std::string ResolveModelPath(const std::string& model);

}  // namespace bioquant
