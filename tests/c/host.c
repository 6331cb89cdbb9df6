/* A C host of untrusted plugins, on libketch: what any language with a C
 * FFI does. Usage: host UPPER.wasm HOSTILE.wasm HELLO.wasm CACHE_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ketch.h"

static int failures = 0;

static void check(int ok, const char *what) {
    if (!ok) {
        printf("FAIL %s\n", what);
        failures++;
    }
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: host UPPER HOSTILE HELLO CACHE_DIR\n");
        return 2;
    }
    char *err = NULL, *out = NULL;
    printf("libketch %s\n", ketch_version());
    ketch_host *host = ketch_host_new(argv[4], &err);
    if (!host) {
        printf("FAIL host: %s\n", err);
        return 1;
    }

    /* A string export, with the defaults: nothing granted. */
    ketch_sandbox *upper = ketch_sandbox_new(host, argv[1], NULL, &err);
    if (!upper) {
        printf("FAIL sandbox: %s\n", err);
        return 1;
    }
    const char *args[] = {"hello from c"};
    int rc = ketch_call(upper, "upper", args, 1, &out, &err);
    check(rc == KETCH_OK && strcmp(out, "HELLO FROM C") == 0, "upper");
    printf("upper: %s\n", out);
    ketch_free(out);
    out = NULL;

    /* Dynamic values as JSON. */
    rc = ketch_call_json(upper, "upper", "[\"json\"]", &out, &err);
    check(rc == KETCH_OK && strcmp(out, "[\"JSON\"]") == 0, "upper json");
    printf("json: %s\n", out);
    ketch_free(out);
    out = NULL;

    /* Bad calls: errors that name the plugin; the next call works. */
    rc = ketch_call(upper, "nope", args, 1, &out, &err);
    check(rc == KETCH_FAILED && strstr(err, "no exported function \"nope\""), "missing export");
    printf("missing: %s\n", err);
    ketch_free(err);
    err = NULL;
    rc = ketch_call_json(upper, "upper", "[1]", &out, &err);
    check(rc == KETCH_FAILED && strstr(err, "argument s: 1 is not a string"), "wrong type");
    printf("wrong type: %s\n", err);
    ketch_free(err);
    err = NULL;
    ketch_sandbox *none = ketch_sandbox_new(host, "/nonexistent/plugin.wasm", "{\"memory\": \"bad\"}", &err);
    check(none == NULL && strstr(err, "options: memory"), "bad options");
    printf("bad options: %s\n", err);
    ketch_free(err);
    err = NULL;

    /* A hostile plugin: a deadline, a memory cap, a read-only grant. */
    char opts[512];
    snprintf(opts, sizeof opts,
             "{\"memory\": \"16MiB\", \"timeout_ms\": 300, \"trap_unknown_imports\": true,"
             " \"dirs\": [{\"host\": \"%s\", \"guest\": \"/data\", \"read_only\": true}]}",
             argv[4]);
    ketch_sandbox *hostile = ketch_sandbox_new(host, argv[2], opts, &err);
    if (!hostile) {
        printf("FAIL hostile sandbox: %s\n", err);
        return 1;
    }
    rc = ketch_call(hostile, "spin", NULL, 0, &out, &err);
    check(rc == KETCH_FAILED && strstr(err, "spin ran past its deadline of 300ms"), "spin");
    printf("spin: %s\n", err);
    ketch_free(err);
    err = NULL;
    rc = ketch_call(hostile, "hog", NULL, 0, &out, &err);
    check(rc == KETCH_FAILED && strstr(err, "over the plugin's memory limit of 16MiB"), "hog");
    printf("hog: %s\n", err);
    ketch_free(err);
    err = NULL;
    const char *write_args[] = {"/data/x", "data"};
    rc = ketch_call(hostile, "write-file", write_args, 2, &out, &err);
    check(rc == KETCH_PLUGIN_ERROR && err && strlen(err) > 0, "write to a read-only grant");
    printf("write-file: %s\n", err);
    ketch_free(err);
    err = NULL;
    const char *shout_args[] = {"2", "hi"};
    rc = ketch_call(hostile, "shout", shout_args, 2, &out, &err);
    check(rc == KETCH_FAILED && strstr(err, "not provided by this host"), "host function");
    ketch_free(err);
    err = NULL;
    const char *up_args[] = {"still up"};
    rc = ketch_call(hostile, "upper", up_args, 1, &out, &err);
    check(rc == KETCH_OK && strcmp(out, "STILL UP") == 0, "after the attacks");
    printf("after: %s\n", out);
    ketch_free(out);
    out = NULL;
    uint64_t calls = 0, traps = 0, timeouts = 0, p50 = 0, p99 = 0;
    ketch_metrics(hostile, &calls, &traps, &timeouts, &p50, &p99);
    check(calls == 5 && traps == 3 && timeouts == 1 && p99 >= p50, "metrics");
    printf("metrics: calls=%llu traps=%llu timeouts=%llu\n", (unsigned long long)calls,
           (unsigned long long)traps, (unsigned long long)timeouts);

    /* A WASI command, its output captured. */
    ketch_sandbox *hello = ketch_sandbox_new(host, argv[3], "{\"stdout\": \"capture\", \"env\": {\"EXIT_CODE\": \"4\"}}", &err);
    if (!hello) {
        printf("FAIL hello sandbox: %s\n", err);
        return 1;
    }
    int code = -1;
    size_t len = 0;
    const char *who[] = {"C"};
    rc = ketch_run(hello, who, 1, &code, &out, &len, &err);
    check(rc == KETCH_OK && code == 4 && strstr(out, "Hello, C!") && len == strlen(out), "run");
    printf("run: exit %d\n", code);
    ketch_free(out);

    ketch_sandbox_free(hello);
    ketch_sandbox_free(hostile);
    ketch_sandbox_free(upper);
    ketch_host_free(host);
    printf(failures ? "FAILED\n" : "ALL OK\n");
    return failures ? 1 : 0;
}
