// entropy: an inspector written in C (clang + wit-bindgen's C bindings).
//
// Measures the Shannon entropy of an object's bytes (bits per byte, 0-8).
// Text sits around 4-5; compressed, encrypted or packed data near 8. An
// object whose Content-Type claims text but whose bytes look random is a
// classic disguise for an encrypted payload: it is blocked.
//
// Settings:
//   max-entropy = "7.5"            block above this (bits per byte)
//   text-types  = "text/,application/json,application/xml"
//                                  Content-Type prefixes that claim text
//   sample-bytes = "4194304"       read at most this many bytes (default 4 MiB)
//
// Answers `blocked("entropy E bits/byte but claims `TYPE`")` or `continue`.
//
// Build: ./build.sh OUT.wasm (see there).

#include "inspector_plugin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// No <stdio.h>: printf-family code pulls in WASI file descriptors, and this
// plugin needs nothing from WASI, so its core module imports only the
// contract and becomes a component without a WASI adapter.

#define READ_CHUNK (1u << 20)

typedef inspector_plugin_string_t string_t;

static void set_string(string_t *out, const char *text) {
    inspector_plugin_string_dup(out, text);
}

static int string_eq(const string_t *s, const char *text) {
    size_t n = strlen(text);
    return s->len == n && memcmp(s->ptr, text, n) == 0;
}

// Appends `text` to the NUL-terminated `buf` of `size` bytes, truncating.
static void append(char *buf, size_t size, const char *text) {
    size_t used = strlen(buf);
    size_t room = size - used - 1;
    size_t n = strlen(text) < room ? strlen(text) : room;
    memcpy(buf + used, text, n);
    buf[used + n] = 0;
}

// Appends `value` (0 <= value < 100) with two decimals.
static void append_fixed2(char *buf, size_t size, double value) {
    long hundredths = lround(value * 100.0);
    char digits[8] = {0};
    int i = 0;
    if (hundredths >= 1000) digits[i++] = (char)('0' + hundredths / 1000 % 10);
    digits[i++] = (char)('0' + hundredths / 100 % 10);
    digits[i++] = '.';
    digits[i++] = (char)('0' + hundredths / 10 % 10);
    digits[i++] = (char)('0' + hundredths % 10);
    append(buf, size, digits);
}

// A copy of `s` as a NUL-terminated C string (caller frees).
static char *c_string(const string_t *s) {
    char *out = malloc(s->len + 1);
    memcpy(out, s->ptr, s->len);
    out[s->len] = 0;
    return out;
}

// Does `type` start with one of the comma-separated `prefixes`?
static int claims_text(const char *type, const char *prefixes) {
    const char *p = prefixes;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        size_t n = (size_t)(end - p);
        while (n > 0 && p[n - 1] == ' ') n--;
        if (n > 0 && strncmp(type, p, n) == 0) return 1;
        p = end;
    }
    return 0;
}

void exports_bucketscan_plugin_inspector_describe(bucketscan_plugin_types_plugin_info_t *ret) {
    set_string(&ret->name, "entropy");
    set_string(&ret->version, "0.1.0");
    set_string(&ret->description, "blocks high-entropy bytes that claim to be text (C)");
}

static bool inspect(
    bucketscan_plugin_object_borrow_object_t object,
    const bucketscan_plugin_types_settings_t *settings,
    bucketscan_plugin_types_decision_t *ret,
    string_t *err) {
    double max_entropy = 7.5;
    char *text_types = NULL;
    uint64_t sample_bytes = 4u << 20;
    for (size_t i = 0; i < settings->len; i++) {
        string_t *key = &settings->ptr[i].f0;
        char *value = c_string(&settings->ptr[i].f1);
        char *end = NULL;
        if (string_eq(key, "max-entropy")) {
            max_entropy = strtod(value, &end);
            if (end == value || *end || max_entropy <= 0 || max_entropy > 8) {
                set_string(err, "setting `max-entropy`: expected a number of bits per byte in (0, 8]");
                free(value);
                return false;
            }
        } else if (string_eq(key, "sample-bytes")) {
            sample_bytes = strtoull(value, &end, 10);
            if (end == value || *end || sample_bytes == 0) {
                set_string(err, "setting `sample-bytes`: expected a positive number of bytes");
                free(value);
                return false;
            }
        } else if (string_eq(key, "text-types")) {
            free(text_types);
            text_types = value;
            continue;
        } else {
            char message[200] = "unknown setting `";
            char *name = c_string(key);
            append(message, sizeof message, name);
            append(message, sizeof message, "` (known: max-entropy, text-types, sample-bytes)");
            free(name);
            set_string(err, message);
            free(value);
            return false;
        }
        free(value);
    }
    bucketscan_plugin_object_object_info_t info;
    bucketscan_plugin_object_method_object_info(object, &info);
    char *type = info.content_type.is_some ? c_string(&info.content_type.val) : strdup("");
    uint64_t size = info.size;
    bucketscan_plugin_object_object_info_free(&info);

    const char *types = text_types ? text_types : "text/,application/json,application/xml";
    if (!claims_text(type, types) || size == 0) {
        free(type);
        free(text_types);
        ret->tag = BUCKETSCAN_PLUGIN_TYPES_DECISION_CONTINUE;
        return true;
    }

    uint64_t counts[256] = {0};
    uint64_t total = 0;
    uint64_t limit = size < sample_bytes ? size : sample_bytes;
    while (total < limit) {
        uint64_t want = limit - total < READ_CHUNK ? limit - total : READ_CHUNK;
        inspector_plugin_list_u8_t chunk;
        string_t read_err;
        if (!bucketscan_plugin_object_method_object_read(object, total, (uint32_t)want, &chunk, &read_err)) {
            *err = read_err;
            free(type);
            free(text_types);
            return false;
        }
        for (size_t i = 0; i < chunk.len; i++) counts[chunk.ptr[i]]++;
        total += chunk.len;
        size_t got = chunk.len;
        inspector_plugin_list_u8_free(&chunk);
        if (got == 0) break;
    }

    double entropy = 0;
    for (int b = 0; b < 256; b++) {
        if (counts[b] == 0) continue;
        double p = (double)counts[b] / (double)total;
        entropy -= p * log2(p);
    }

    if (entropy > max_entropy) {
        char reason[256] = "entropy ";
        append_fixed2(reason, sizeof reason, entropy);
        append(reason, sizeof reason, " bits/byte over ");
        append_fixed2(reason, sizeof reason, max_entropy);
        append(reason, sizeof reason, ", but it claims `");
        append(reason, sizeof reason, type);
        append(reason, sizeof reason, "`");
        ret->tag = BUCKETSCAN_PLUGIN_TYPES_DECISION_VERDICT;
        ret->val.verdict.tag = BUCKETSCAN_PLUGIN_TYPES_VERDICT_BLOCKED;
        set_string(&ret->val.verdict.val.blocked, reason);
    } else {
        ret->tag = BUCKETSCAN_PLUGIN_TYPES_DECISION_CONTINUE;
    }
    free(type);
    free(text_types);
    return true;
}

// The export: arguments belong to the callee, and a borrowed handle must be
// released before returning (the host traps otherwise).
bool exports_bucketscan_plugin_inspector_inspect(
    exports_bucketscan_plugin_inspector_borrow_object_t object,
    bucketscan_plugin_types_settings_t *settings,
    bucketscan_plugin_types_verdict_t *maybe_so_far,
    bucketscan_plugin_types_decision_t *ret,
    string_t *err) {
    bool ok = inspect(object, settings, ret, err);
    bucketscan_plugin_types_settings_free(settings);
    if (maybe_so_far) bucketscan_plugin_types_verdict_free(maybe_so_far);
    bucketscan_plugin_object_object_drop_borrow(object);
    return ok;
}
