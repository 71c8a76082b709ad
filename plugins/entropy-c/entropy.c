// entropy: an inspector written in C (clang + wit-bindgen's C bindings).
//
// Measures the Shannon entropy of an object's bytes (bits per byte, 0-8).
// Text sits around 4-5; compressed, encrypted or packed data near 8. An
// object whose Content-Type claims text but whose bytes look random is a
// classic disguise for an encrypted payload: it is blocked.
//
// Settings:
//   max-entropy = 7.5              block above this (bits per byte)
//   text-types  = ["text/", "application/json", "application/xml"]
//                                  Content-Type prefixes that claim text
//   sample-bytes = 4194304         read at most this many bytes (default 4 MiB)
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
typedef bucketscan_plugin_types_setting_value_t setting_t;
typedef bucketscan_plugin_types_plugin_error_t plugin_error_t;

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

// Does `type` start with one of `prefixes`?
static int claims_text(const char *type, const inspector_plugin_list_string_t *prefixes) {
    for (size_t i = 0; i < prefixes->len; i++) {
        const string_t *prefix = &prefixes->ptr[i];
        if (prefix->len > 0 && strlen(type) >= prefix->len && memcmp(type, prefix->ptr, prefix->len) == 0) return 1;
    }
    return 0;
}

static const char *DEFAULT_TEXT_TYPES[] = {"text/", "application/json", "application/xml"};

// The contract's `invalid-settings` error, naming `key`.
static bool invalid(plugin_error_t *err, const char *key, const char *expected) {
    char message[200] = "setting `";
    append(message, sizeof message, key);
    append(message, sizeof message, "`: expected ");
    append(message, sizeof message, expected);
    err->tag = BUCKETSCAN_PLUGIN_TYPES_PLUGIN_ERROR_INVALID_SETTINGS;
    set_string(&err->val.invalid_settings, message);
    return false;
}

// A number setting: a float or an integer, or text that reads as one.
static bool number(const setting_t *value, double *out) {
    switch (value->tag) {
    case BUCKETSCAN_PLUGIN_TYPES_SETTING_VALUE_FLOAT: *out = value->val.float_; return true;
    case BUCKETSCAN_PLUGIN_TYPES_SETTING_VALUE_INTEGER: *out = (double)value->val.integer; return true;
    case BUCKETSCAN_PLUGIN_TYPES_SETTING_VALUE_TEXT: {
        char *text = c_string(&value->val.text);
        char *end = NULL;
        *out = strtod(text, &end);
        bool ok = end != text && *end == 0;
        free(text);
        return ok;
    }
    default: return false;
    }
}

void exports_bucketscan_plugin_inspector_info(bucketscan_plugin_types_plugin_info_t *ret) {
    set_string(&ret->name, "entropy");
    set_string(&ret->version, "0.2.0");
    set_string(&ret->description, "blocks high-entropy bytes that claim to be text (C)");
}

typedef struct {
    double max_entropy;
    uint64_t sample_bytes;
    // Borrowed from the settings list; `len == 0` means the defaults.
    inspector_plugin_list_string_t text_types;
} options_t;

static bool read_options(const bucketscan_plugin_stage_list_tuple2_string_setting_value_t *settings, options_t *out,
                         plugin_error_t *err) {
    out->max_entropy = 7.5;
    out->sample_bytes = 4u << 20;
    out->text_types.ptr = NULL;
    out->text_types.len = 0;
    for (size_t i = 0; i < settings->len; i++) {
        const string_t *key = &settings->ptr[i].f0;
        const setting_t *value = &settings->ptr[i].f1;
        double n = 0;
        if (string_eq(key, "max-entropy")) {
            if (!number(value, &n) || n <= 0 || n > 8) return invalid(err, "max-entropy", "a number of bits per byte in (0, 8]");
            out->max_entropy = n;
        } else if (string_eq(key, "sample-bytes")) {
            if (!number(value, &n) || n < 1 || n > 1e15) return invalid(err, "sample-bytes", "a positive number of bytes");
            out->sample_bytes = (uint64_t)n;
        } else if (string_eq(key, "text-types")) {
            if (value->tag == BUCKETSCAN_PLUGIN_TYPES_SETTING_VALUE_ITEMS) {
                out->text_types = value->val.items;
            } else if (value->tag == BUCKETSCAN_PLUGIN_TYPES_SETTING_VALUE_TEXT) {
                out->text_types.ptr = (string_t *)&value->val.text;
                out->text_types.len = 1;
            } else {
                return invalid(err, "text-types", "a list of Content-Type prefixes");
            }
        } else {
            char message[200] = "unknown setting `";
            char *name = c_string(key);
            append(message, sizeof message, name);
            append(message, sizeof message, "` (known: max-entropy, text-types, sample-bytes)");
            free(name);
            err->tag = BUCKETSCAN_PLUGIN_TYPES_PLUGIN_ERROR_INVALID_SETTINGS;
            set_string(&err->val.invalid_settings, message);
            return false;
        }
    }
    return true;
}

// Reads up to `limit` bytes of `object` and returns their entropy.
static bool entropy_of(bucketscan_plugin_object_borrow_object_t object, uint64_t limit, double *entropy,
                       plugin_error_t *err) {
    uint64_t counts[256] = {0};
    uint64_t total = 0;
    while (total < limit) {
        uint64_t want = limit - total < READ_CHUNK ? limit - total : READ_CHUNK;
        inspector_plugin_list_u8_t chunk;
        bucketscan_plugin_object_read_error_t read_err;
        if (!bucketscan_plugin_object_method_object_read(object, total, (uint32_t)want, &chunk, &read_err)) {
            bucketscan_plugin_object_read_error_free(&read_err);
            err->tag = BUCKETSCAN_PLUGIN_TYPES_PLUGIN_ERROR_OTHER;
            set_string(&err->val.other, "reading the object failed");
            return false;
        }
        for (size_t i = 0; i < chunk.len; i++) counts[chunk.ptr[i]]++;
        total += chunk.len;
        size_t got = chunk.len;
        inspector_plugin_list_u8_free(&chunk);
        if (got == 0) break;
    }
    *entropy = 0;
    for (int b = 0; b < 256; b++) {
        if (counts[b] == 0) continue;
        double p = (double)counts[b] / (double)total;
        *entropy -= p * log2(p);
    }
    return true;
}

static bool inspect(bucketscan_plugin_stage_borrow_stage_t stage, bucketscan_plugin_object_borrow_object_t object,
                    bucketscan_plugin_types_decision_t *ret, plugin_error_t *err) {
    bucketscan_plugin_stage_list_tuple2_string_setting_value_t settings;
    bucketscan_plugin_stage_method_stage_settings(stage, &settings);
    options_t options;
    if (!read_options(&settings, &options, err)) {
        bucketscan_plugin_stage_list_tuple2_string_setting_value_free(&settings);
        return false;
    }
    string_t content_type;
    char *type;
    if (bucketscan_plugin_object_method_object_content_type(object, &content_type)) {
        type = c_string(&content_type);
        inspector_plugin_string_free(&content_type);
    } else {
        type = strdup("");
    }
    uint64_t size = bucketscan_plugin_object_method_object_size(object);

    string_t defaults[3];
    inspector_plugin_list_string_t text_types = options.text_types;
    if (text_types.len == 0) {
        for (int i = 0; i < 3; i++) inspector_plugin_string_set(&defaults[i], DEFAULT_TEXT_TYPES[i]);
        text_types.ptr = defaults;
        text_types.len = 3;
    }
    bool text = claims_text(type, &text_types);
    bucketscan_plugin_stage_list_tuple2_string_setting_value_free(&settings);
    ret->tag = BUCKETSCAN_PLUGIN_TYPES_DECISION_CONTINUE;
    if (!text || size == 0) {
        free(type);
        return true;
    }

    double entropy = 0;
    uint64_t limit = size < options.sample_bytes ? size : options.sample_bytes;
    if (!entropy_of(object, limit, &entropy, err)) {
        free(type);
        return false;
    }
    if (entropy > options.max_entropy) {
        char reason[256] = "entropy ";
        append_fixed2(reason, sizeof reason, entropy);
        append(reason, sizeof reason, " bits/byte over ");
        append_fixed2(reason, sizeof reason, options.max_entropy);
        append(reason, sizeof reason, ", but it claims `");
        append(reason, sizeof reason, type);
        append(reason, sizeof reason, "`");
        ret->tag = BUCKETSCAN_PLUGIN_TYPES_DECISION_VERDICT;
        ret->val.verdict.tag = BUCKETSCAN_PLUGIN_TYPES_VERDICT_BLOCKED;
        set_string(&ret->val.verdict.val.blocked, reason);
    }
    free(type);
    return true;
}

// The export. The object handle `stage.object()` returns is owned here,
// and the stage is borrowed for the call: both are dropped before
// returning (the host traps on a borrow still held).
bool exports_bucketscan_plugin_inspector_inspect(exports_bucketscan_plugin_inspector_borrow_stage_t stage,
                                                 bucketscan_plugin_types_decision_t *ret, plugin_error_t *err) {
    bucketscan_plugin_object_own_object_t object = bucketscan_plugin_stage_method_stage_object(stage);
    bool ok = inspect(stage, bucketscan_plugin_object_borrow_object(object), ret, err);
    bucketscan_plugin_object_object_drop_own(object);
    bucketscan_plugin_stage_stage_drop_borrow(stage);
    return ok;
}
