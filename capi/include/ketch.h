/*
 * ketch.h: run untrusted WebAssembly plugins from C (and any language with
 * a C FFI), with ketch's deny-by-default grants and limits.
 *
 * Link with -lketch (libketch.so, built by `cargo build -p ketch-capi`).
 *
 *   ketch_host *host = ketch_host_new(NULL, &err);
 *   ketch_sandbox *sb = ketch_sandbox_new(host, "plugin-upper.wasm",
 *       "{\"memory\": \"16MiB\", \"timeout_ms\": 500}", &err);
 *   const char *args[] = {"hello"};
 *   if (ketch_call(sb, "upper", args, 1, &out, &err) == KETCH_OK) puts(out);
 *   ketch_free(out);
 *   ketch_sandbox_free(sb);
 *   ketch_host_free(host);
 *
 * Strings the library returns (results and errors) are the caller's, to be
 * released with ketch_free. Every error names the plugin and the cause.
 * Handles are thread-safe: one sandbox may be called from many threads at
 * once. No function aborts the process: a panic inside the library is
 * reported as an error.
 */
#ifndef KETCH_H
#define KETCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define KETCH_OK 0
/* The call failed: bad arguments, a denial, a trap, the deadline, the
 * memory cap; *err says which. */
#define KETCH_FAILED 1
/* The plugin returned the error case of a result<_, string>; *err holds
 * its value. */
#define KETCH_PLUGIN_ERROR 2

/* The engines, compile cache and content store all plugins share. */
typedef struct ketch_host ketch_host;
/* A plugin under its grants and limits. */
typedef struct ketch_sandbox ketch_sandbox;

/* The library's version, static. */
const char *ketch_version(void);

/* A host keeping its compile cache and pulled plugins under cache_dir
 * (NULL: ketchd's data root, sharing its compile cache). NULL on error,
 * with *err set. */
ketch_host *ketch_host_new(const char *cache_dir, char **err);
void ketch_host_free(ketch_host *host);

/*
 * A sandbox for plugin, a .wasm file or an OCI reference (pulled, digest
 * checked; registries on loopback speak plain HTTP). options is NULL (deny
 * everything, default limits) or a JSON object, every key optional:
 *
 *   "dirs":       [{"host": "/srv/data", "guest": "/data", "read_only": true}]
 *   "env":        {"KEY": "value"}
 *   "allow_http": ["api.example.com", "127.0.0.1:8080"]
 *   "stdout", "stderr": "discard" (default) | "capture" | "inherit"
 *   "memory":     bytes, or a size such as "64MiB" (default 64MiB)
 *   "timeout_ms": the deadline of each call (default 10000)
 *   "fuel":       units of fuel per call (default: none)
 *   "reuse":      "fresh" (a new instance per call, default) | "keep"
 *   "trap_unknown_imports": true to load plugins that import functions
 *                 this host does not provide (calling one fails)
 *
 * NULL on error, with *err set.
 */
ketch_sandbox *ketch_sandbox_new(const ketch_host *host, const char *plugin,
                                 const char *options, char **err);
void ketch_sandbox_free(ketch_sandbox *sandbox);

/* Call the export named export_name with string arguments (a word is
 * converted to a number, bool or char where the parameter wants one).
 * A string result, or the ok string of a result<string, string>, goes to
 * *out; other results as JSON. */
int ketch_call(const ketch_sandbox *sandbox, const char *export_name,
               const char *const *args, size_t nargs, char **out, char **err);

/* Call with dynamic values as JSON: args_json is an array, one element per
 * parameter (strings, numbers, booleans; arrays for lists and tuples;
 * objects for records; null or the value for options; {"ok": v} or
 * {"err": v} for results; a string for enums; {"case": v} for variants).
 * *out is the JSON array of the results. */
int ketch_call_json(const ketch_sandbox *sandbox, const char *export_name,
                    const char *args_json, char **out, char **err);

/* Run the plugin as a WASI command with args after its name, in a fresh
 * instance. *exit_code is its exit code. Captured stdout (see "stdout")
 * goes to *out as a string (cut at a NUL byte, if it has one) of *out_len
 * bytes; exit_code, out and out_len may be NULL. */
int ketch_run(const ketch_sandbox *sandbox, const char *const *args, size_t nargs,
              int *exit_code, char **out, size_t *out_len, char **err);

/* Counters of the sandbox's calls so far, and the median and 99th
 * percentile of the latest calls' durations. Any pointer may be NULL. */
void ketch_metrics(const ketch_sandbox *sandbox, uint64_t *calls, uint64_t *traps,
                   uint64_t *timeouts, uint64_t *p50_ns, uint64_t *p99_ns);

/* Release a string the library returned. NULL is ignored. */
void ketch_free(char *s);

#ifdef __cplusplus
}
#endif

#endif /* KETCH_H */
