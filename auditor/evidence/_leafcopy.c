/* Leaf hashes straight from a binary COPY stream: verify's fast path (docs/evidence.md,
 * "The fast verify path"; auditor/store/leaf_copy.py drives it).
 *
 * hash_copy(plan, data) parses the whole of one `COPY (SELECT id, <fields>...) TO STDOUT
 * (FORMAT binary)` (header, rows, trailer), writes each row's leaf bytes (0x00 || the RFC
 * 8785 canonical JSON of its audited fields) and hashes them with OpenSSL's SHA-256, all with
 * the GIL released. It returns four byte strings: the ids it hashed (native int64, sorted,
 * each once), their hashes (32 bytes each, same order), the ids the stream holds more than
 * once (a forged twin of a sealed event: the caller reports it inserted), and the ids of
 * rows it did not encode, which the caller hashes the Python way (auditor.store.leaf_sql).
 *
 * Like auditor/evidence/_leafc.c it is an accelerator, never a second definition: a row it
 * cannot write exactly is left to Python. Left to Python (the same rules as _leafc.c):
 *
 * - a JSON number that is not a plain integer within int64 (floats, exponents, -0);
 * - an object key with an escape (\n, \u00xx...) or a character beyond U+FFFF (RFC 8785 sorts
 *   keys by UTF-16 code units; for keys within the BMP without escapes that is byte order of
 *   their UTF-8, which is what is compared here);
 * - a JSON string escape other than PostgreSQL's own (\" \\ \b \f \n \r \t, lowercase
 *   \u00xx below U+0020 for the other controls: exactly RFC 8785's), or a raw control;
 * - nesting deeper than MAX_DEPTH; a timestamp outside years 1..9999 (or +-infinity);
 * - JSON text this parser does not read.
 * Anything else malformed (the COPY framing itself: lengths, field counts, the trailer) is a
 * ValueError: a stream that is not what was asked for is never half read.
 *
 * Text arrives in the client encoding, which the caller has checked is UTF-8.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

enum kind {
    K_CONST = 0, /* a constant member ("source":"event"): the prefix is the whole member */
    K_TEXT = 1,
    K_INT8 = 2,
    K_INT4 = 3,
    K_UUID = 4,
    K_TIMESTAMPTZ = 5,
    K_JSONB = 6,
    K_BYTEA = 7,
    K_LAST = 7,
};

enum { OK = 0, FALLBACK = 1, NOMEM = -1, BAD = -2 };

/* ---- growable buffers (plain malloc: used without the GIL) ----------------------------- */

typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
} Buf;

static int
reserve(Buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) {
        return OK;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        if (cap > SIZE_MAX / 2) {
            return NOMEM;
        }
        cap *= 2;
    }
    unsigned char *data = realloc(b->data, cap);
    if (data == NULL) {
        return NOMEM;
    }
    b->data = data;
    b->cap = cap;
    return OK;
}

static int
put(Buf *b, const void *bytes, size_t n)
{
    if (reserve(b, n) != OK) {
        return NOMEM;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return OK;
}

static int
put1(Buf *b, unsigned char c)
{
    if (b->len == b->cap && reserve(b, 1) != OK) {
        return NOMEM;
    }
    b->data[b->len++] = c;
    return OK;
}

/* ---- canonical JSON of PostgreSQL's jsonb text ----------------------------------------- */

typedef struct {
    const unsigned char *key; /* the key's bytes between its quotes (input) */
    size_t klen;
    size_t start; /* the member `"key":value` in the output */
    size_t len;
} Member;

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    Buf *out;
    Buf scratch;
    Member *members;
    size_t top;
    size_t cap;
} Json;

static void
skip_ws(Json *js)
{
    while (js->p < js->end &&
           (*js->p == ' ' || *js->p == '\n' || *js->p == '\t' || *js->p == '\r')) {
        js->p++;
    }
}

static int
is_lower_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int
hex_value(unsigned char c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

/* The first byte at or after q that is '"', '\\' or a control (or end): eight bytes at a
 * time (strings are most of a payload's bytes). */
static inline const unsigned char *
plain_run(const unsigned char *q, const unsigned char *end)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    while (end - q >= 8) {
        uint64_t w;
        memcpy(&w, q, 8);
        uint64_t quote = w ^ (ones * '"');
        uint64_t slash = w ^ (ones * '\\');
        /* a zero byte in quote or slash, or a byte below 0x20 in w (exact for bytes < 0x80;
         * a byte >= 0x80 never sets its flag: its high bit is masked by ~w) */
        uint64_t hit = ((quote - ones) & ~quote) | ((slash - ones) & ~slash) |
                       ((w - ones * 0x20) & ~w);
        if (hit & highs) {
            /* a special byte here, or a borrow's false alarm: look byte by byte */
            for (int i = 0; i < 8; i++) {
                if (q[i] < 0x20 || q[i] == '"' || q[i] == '\\') {
                    return q + i;
                }
            }
        }
        q += 8;
    }
    while (q < end && *q >= 0x20 && *q != '"' && *q != '\\') {
        q++;
    }
    return q;
}

/* A string (js->p at its opening quote) copied as it stands when it is already RFC 8785's
 * form; FALLBACK otherwise. ``key``: stricter, no escape and nothing beyond U+FFFF. */
static int
string(Json *js, int key, const unsigned char **content, size_t *clen)
{
    const unsigned char *start = js->p;
    const unsigned char *q = start + 1;
    while (1) {
        if (!key) {
            q = plain_run(q, js->end);
        }
        if (q >= js->end) {
            return FALLBACK;
        }
        unsigned char c = *q;
        if (c == '"') {
            break;
        }
        if (c < 0x20) {
            return FALLBACK;
        }
        if (c == '\\') {
            if (key || q + 1 >= js->end) {
                return FALLBACK;
            }
            unsigned char e = q[1];
            if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
                e == 't') {
                q += 2;
                continue;
            }
            if (e != 'u' || js->end - q < 6 || q[2] != '0' || q[3] != '0' ||
                !is_lower_hex(q[4]) || !is_lower_hex(q[5])) {
                return FALLBACK;
            }
            int code = hex_value(q[4]) * 16 + hex_value(q[5]);
            if (code >= 0x20 || code == 0x08 || code == 0x09 || code == 0x0a || code == 0x0c ||
                code == 0x0d) {
                return FALLBACK; /* RFC 8785 writes these raw or short */
            }
            q += 6;
            continue;
        }
        if (key && c >= 0xf0) {
            return FALLBACK;
        }
        q++;
    }
    q++; /* the closing quote */
    if (content != NULL) {
        *content = start + 1;
        *clen = (size_t)(q - start) - 2;
    }
    js->p = q;
    return put(js->out, start, (size_t)(q - start));
}

static int
number(Json *js)
{
    const unsigned char *start = js->p;
    const unsigned char *q = start;
    if (*q == '-') {
        q++;
    }
    const unsigned char *digits = q;
    while (q < js->end && *q >= '0' && *q <= '9') {
        q++;
    }
    size_t n = (size_t)(q - digits);
    if (n == 0 || n > 19 || (n > 1 && *digits == '0')) {
        return FALLBACK;
    }
    if (n == 19 && memcmp(digits, *start == '-' ? "9223372036854775808" : "9223372036854775807",
                          19) > 0) {
        return FALLBACK; /* beyond int64, as _leafc.c */
    }
    if (q < js->end && (*q == '.' || *q == 'e' || *q == 'E')) {
        return FALLBACK; /* a float: RFC 8785's number form is the reference's job */
    }
    if (*start == '-' && n == 1 && *digits == '0') {
        return FALLBACK; /* -0 */
    }
    js->p = q;
    return put(js->out, start, (size_t)(q - start));
}

static int
literal(Json *js, const char *word, size_t n)
{
    if ((size_t)(js->end - js->p) < n || memcmp(js->p, word, n) != 0) {
        return FALLBACK;
    }
    js->p += n;
    return put(js->out, word, n);
}

static inline int
member_order(const void *a, const void *b)
{
    const Member *x = a;
    const Member *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    /* keys are short and differ early: a loop beats a call to memcmp */
    for (size_t i = 0; i < n; i++) {
        if (x->key[i] != y->key[i]) {
            return x->key[i] < y->key[i] ? -1 : 1;
        }
    }
    return (x->klen > y->klen) - (x->klen < y->klen);
}

static int value(Json *js, int depth);

static int
object(Json *js, int depth)
{
    size_t base = js->top;
    size_t open = js->out->len;
    int sorted = 1;
    int rc;
    js->p++; /* { */
    if ((rc = put1(js->out, '{')) != OK) {
        return rc;
    }
    skip_ws(js);
    if (js->p < js->end && *js->p == '}') {
        js->p++;
        return put1(js->out, '}');
    }
    while (1) {
        if (js->p >= js->end || *js->p != '"') {
            return FALLBACK;
        }
        if (js->top == js->cap) {
            size_t cap = js->cap ? js->cap * 2 : 64;
            Member *members = realloc(js->members, cap * sizeof(Member));
            if (members == NULL) {
                return NOMEM;
            }
            js->members = members;
            js->cap = cap;
        }
        /* Taken before the value is read: a nested object's members go above it. */
        size_t at = js->top++;
        js->members[at].start = js->out->len;
        if ((rc = string(js, 1, &js->members[at].key, &js->members[at].klen)) != OK) {
            return rc;
        }
        skip_ws(js);
        if (js->p >= js->end || *js->p != ':') {
            return FALLBACK;
        }
        js->p++;
        if ((rc = put1(js->out, ':')) != OK) {
            return rc;
        }
        if ((rc = value(js, depth + 1)) != OK) {
            return rc;
        }
        js->top = at + 1; /* the nested object's members are done with */
        js->members[at].len = js->out->len - js->members[at].start;
        if (at > base) {
            int c = member_order(&js->members[at - 1], &js->members[at]);
            if (c == 0) {
                return FALLBACK; /* a repeated key: jsonb has none; not for us to judge */
            }
            if (c > 0) {
                sorted = 0;
            }
        }
        skip_ws(js);
        if (js->p < js->end && *js->p == ',') {
            js->p++;
            if ((rc = put1(js->out, ',')) != OK) {
                return rc;
            }
            skip_ws(js);
            continue;
        }
        if (js->p < js->end && *js->p == '}') {
            js->p++;
            break;
        }
        return FALLBACK;
    }
    size_t count = js->top - base;
    if (!sorted) {
        /* PostgreSQL keeps a jsonb object's keys shortest first: rewrite the members in
         * RFC 8785 order from a copy of what was written. */
        Member *slice = &js->members[base];
        if (count <= 24) {
            /* few members (the usual object): insertion sort, no call per comparison */
            for (size_t i = 1; i < count; i++) {
                Member m = slice[i];
                size_t j = i;
                while (j > 0 && member_order(&slice[j - 1], &m) > 0) {
                    slice[j] = slice[j - 1];
                    j--;
                }
                slice[j] = m;
            }
        } else {
            qsort(slice, count, sizeof(Member), member_order);
        }
        size_t body = js->out->len - open;
        js->scratch.len = 0;
        if ((rc = put(&js->scratch, js->out->data + open, body)) != OK) {
            return rc;
        }
        js->out->len = open + 1; /* keep the { */
        for (size_t i = 0; i < count; i++) {
            if (i && (rc = put1(js->out, ',')) != OK) {
                return rc;
            }
            if ((rc = put(js->out, js->scratch.data + (slice[i].start - open), slice[i].len)) !=
                OK) {
                return rc;
            }
        }
    }
    js->top = base;
    return put1(js->out, '}');
}

static int
array(Json *js, int depth)
{
    int rc;
    js->p++; /* [ */
    if ((rc = put1(js->out, '[')) != OK) {
        return rc;
    }
    skip_ws(js);
    if (js->p < js->end && *js->p == ']') {
        js->p++;
        return put1(js->out, ']');
    }
    while (1) {
        if ((rc = value(js, depth + 1)) != OK) {
            return rc;
        }
        skip_ws(js);
        if (js->p < js->end && *js->p == ',') {
            js->p++;
            if ((rc = put1(js->out, ',')) != OK) {
                return rc;
            }
            continue;
        }
        if (js->p < js->end && *js->p == ']') {
            js->p++;
            return put1(js->out, ']');
        }
        return FALLBACK;
    }
}

static int
value(Json *js, int depth)
{
    if (depth > MAX_DEPTH) {
        return FALLBACK;
    }
    skip_ws(js);
    if (js->p >= js->end) {
        return FALLBACK;
    }
    switch (*js->p) {
    case '{':
        return object(js, depth);
    case '[':
        return array(js, depth);
    case '"':
        return string(js, 0, NULL, NULL);
    case 't':
        return literal(js, "true", 4);
    case 'f':
        return literal(js, "false", 5);
    case 'n':
        return literal(js, "null", 4);
    default:
        if (*js->p == '-' || (*js->p >= '0' && *js->p <= '9')) {
            return number(js);
        }
        return FALLBACK;
    }
}

static int
json_text(Json *js, const unsigned char *text, size_t n)
{
    js->p = text;
    js->end = text + n;
    js->top = 0;
    int rc = value(js, 0);
    if (rc != OK) {
        return rc;
    }
    skip_ws(js);
    return js->p == js->end ? OK : FALLBACK;
}

/* ---- plain fields ---------------------------------------------------------------------- */

static const char HEX[] = "0123456789abcdef";

static int
text(Buf *out, const unsigned char *s, size_t n)
{
    /* RFC 8785 (and canonical.py): only '"', '\' and controls escaped */
    if (reserve(out, n * 6 + 2) != OK) {
        return NOMEM;
    }
    unsigned char *w = out->data + out->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\b': *w++ = 'b'; break;
        case '\t': *w++ = 't'; break;
        case '\n': *w++ = 'n'; break;
        case '\f': *w++ = 'f'; break;
        case '\r': *w++ = 'r'; break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = HEX[c >> 4];
            *w++ = HEX[c & 15];
        }
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return OK;
}

static uint64_t
be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static int
integer(Buf *out, int64_t v)
{
    char digits[24];
    char *w = digits + sizeof digits;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--w = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--w = '-';
    }
    return put(out, w, (size_t)(digits + sizeof digits - w));
}

static void
digits(char *w, int64_t v, int n)
{
    while (n-- > 0) {
        w[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

static int
uuid(Buf *out, const unsigned char *p)
{
    char s[38];
    char *w = s;
    *w++ = '"';
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *w++ = '-';
        }
        *w++ = HEX[p[i] >> 4];
        *w++ = HEX[p[i] & 15];
    }
    *w++ = '"';
    return put(out, s, (size_t)(w - s));
}

/* PostgreSQL's timestamptz (microseconds since 2000-01-01 00:00 UTC) as year, month, day,
 * seconds of the day and microseconds: FALLBACK outside years 1..9999 (what a Python
 * datetime holds: the reference's). */
static int
civil(int64_t us, int64_t *y_out, int64_t *m_out, int64_t *d_out, int64_t *secs_out,
      int64_t *frac_out)
{
    const int64_t day_us = 86400000000LL;
    if (us < -63082281600000000LL || us >= 252455616000000000LL) {
        return FALLBACK;
    }
    int64_t days = us / day_us;
    int64_t rem = us % day_us;
    if (rem < 0) {
        rem += day_us;
        days -= 1;
    }
    /* civil_from_days (H. Hinnant), days since 1970-01-01 */
    int64_t z = days + 10957 + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    *y_out = y;
    *m_out = m;
    *d_out = d;
    *secs_out = rem / 1000000;
    *frac_out = rem % 1000000;
    return OK;
}

/* The leaf's form: "YYYY-MM-DDTHH:MM:SS.ffffffZ" with its quotes. */
static int
timestamp(Buf *out, int64_t us)
{
    int64_t y, m, d, secs, frac;
    if (civil(us, &y, &m, &d, &secs, &frac) != OK) {
        return FALLBACK;
    }
    char s[29] = "\"0000-00-00T00:00:00.000000Z\"";
    digits(s + 1, y, 4);
    digits(s + 6, m, 2);
    digits(s + 9, d, 2);
    digits(s + 12, secs / 3600, 2);
    digits(s + 15, secs / 60 % 60, 2);
    digits(s + 18, secs % 60, 2);
    digits(s + 21, frac, 6);
    return put(out, s, 29);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
base64(Buf *out, const unsigned char *p, size_t n)
{
    if (reserve(out, (n + 2) / 3 * 4 + 2) != OK) {
        return NOMEM;
    }
    unsigned char *w = out->data + out->len;
    *w++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *w++ = B64[v >> 18];
        *w++ = B64[(v >> 12) & 63];
        *w++ = B64[(v >> 6) & 63];
        *w++ = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *w++ = B64[v >> 18];
        *w++ = B64[(v >> 12) & 63];
        *w++ = '=';
        *w++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *w++ = B64[v >> 18];
        *w++ = B64[(v >> 12) & 63];
        *w++ = B64[(v >> 6) & 63];
        *w++ = '=';
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return OK;
}

/* ---- the COPY stream ------------------------------------------------------------------- */

typedef struct {
    const unsigned char *prefix;
    size_t plen;
    int kind;
} Field;

typedef struct {
    int64_t id;
    unsigned char hash[32];
    unsigned char fallback;
} Entry;

typedef struct {
    Entry *entries;
    size_t count;
    size_t cap;
    const char *error; /* static text of a BAD answer */
} Result;

static int
entry_order(const void *a, const void *b)
{
    int64_t x = ((const Entry *)a)->id;
    int64_t y = ((const Entry *)b)->id;
    return (x > y) - (x < y);
}

static const unsigned char SIGNATURE[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};

/* One field's JSON value into ``out``: OK, FALLBACK, NOMEM or BAD. */
static int
field_value(Json *js, Buf *out, int kind, const unsigned char *p, size_t n)
{
    switch (kind) {
    case K_TEXT:
        return text(out, p, n);
    case K_INT8:
        if (n != 8) {
            return BAD;
        }
        return integer(out, (int64_t)be(p, 8));
    case K_INT4:
        if (n != 4) {
            return BAD;
        }
        return integer(out, (int32_t)(uint32_t)be(p, 4));
    case K_UUID:
        if (n != 16) {
            return BAD;
        }
        return uuid(out, p);
    case K_TIMESTAMPTZ:
        if (n != 8) {
            return BAD;
        }
        return timestamp(out, (int64_t)be(p, 8));
    case K_JSONB:
        if (n < 1 || p[0] != 1) {
            return BAD; /* jsonb's binary form: version 1, then the text */
        }
        js->out = out;
        return json_text(js, p + 1, n - 1);
    case K_BYTEA:
        return base64(out, p, n);
    default:
        return BAD;
    }
}

/* SHA-256 fetched once per call: EVP_sha256() makes each DigestInit look the algorithm up
 * again, under a lock (measured: a tenth of the time per row). NULL: out of memory. */
static EVP_MD *
sha256_fetch(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    return EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    return (EVP_MD *)EVP_sha256();
#endif
}

static void
sha256_free(EVP_MD *md)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    EVP_MD_free(md);
#else
    (void)md;
#endif
}

static int
parse(const unsigned char *data, size_t size, const Field *fields, size_t nfields,
      Result *res)
{
    const unsigned char *p = data;
    const unsigned char *end = data + size;
    size_t columns = 1; /* the id */
    for (size_t i = 0; i < nfields; i++) {
        columns += fields[i].kind != K_CONST;
    }
    if (size < 19 || memcmp(p, SIGNATURE, 11) != 0) {
        res->error = "not a binary COPY stream (no PGCOPY signature)";
        return BAD;
    }
    uint64_t extension = be(p + 15, 4);
    if (be(p + 11, 4) & 0xffff0000u) {
        res->error = "binary COPY header has critical flags this parser does not know";
        return BAD;
    }
    p += 19;
    if (extension > (uint64_t)(end - p)) {
        res->error = "binary COPY header extension runs past the end";
        return BAD;
    }
    p += extension;

    Buf leaf = {0};
    Json js = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD *sha256 = sha256_fetch();
    int rc = OK;
    if (ctx == NULL || sha256 == NULL) {
        EVP_MD_CTX_free(ctx);
        sha256_free(sha256);
        return NOMEM;
    }
    while (1) {
        if (end - p < 2) {
            res->error = "binary COPY stream ends without its trailer";
            rc = BAD;
            break;
        }
        int16_t count = (int16_t)be(p, 2);
        p += 2;
        if (count == -1) {
            if (p != end) {
                res->error = "bytes after the binary COPY trailer";
                rc = BAD;
            }
            break;
        }
        if (count < 0 || (size_t)count != columns) {
            res->error = "a binary COPY row has another number of fields than asked for";
            rc = BAD;
            break;
        }
        if (res->count == res->cap) {
            size_t cap = res->cap ? res->cap * 2 : 1024;
            Entry *entries = realloc(res->entries, cap * sizeof(Entry));
            if (entries == NULL) {
                rc = NOMEM;
                break;
            }
            res->entries = entries;
            res->cap = cap;
        }
        Entry *entry = &res->entries[res->count];
        entry->fallback = 0;
        /* The id. */
        if (end - p < 4 || be(p, 4) != 8 || end - p < 12) {
            res->error = "a binary COPY row's id is not a bigint";
            rc = BAD;
            break;
        }
        entry->id = (int64_t)be(p + 4, 8);
        p += 12;
        leaf.len = 0;
        if ((rc = put(&leaf, "\x00{", 2)) != OK) {
            break;
        }
        int first = 1;
        int row = OK;
        for (size_t i = 0; i < nfields; i++) {
            const Field *f = &fields[i];
            if (f->kind == K_CONST) {
                if (row == OK) {
                    if (!first && (row = put1(&leaf, ',')) != OK) {
                        continue;
                    }
                    row = put(&leaf, f->prefix, f->plen);
                    first = 0;
                }
                continue;
            }
            if (end - p < 4) {
                res->error = "binary COPY stream truncated in a field length";
                row = BAD;
                break;
            }
            int32_t n = (int32_t)(uint32_t)be(p, 4);
            p += 4;
            if (n == -1) {
                continue; /* NULL: the member is left out */
            }
            if (n < 0 || (size_t)n > (size_t)(end - p)) {
                res->error = "a binary COPY field length runs past the end";
                row = BAD;
                break;
            }
            const unsigned char *v = p;
            p += n;
            if (row != OK) {
                continue; /* the row falls back; read on to the next row */
            }
            if (!first && (row = put1(&leaf, ',')) != OK) {
                continue;
            }
            first = 0;
            if ((row = put(&leaf, f->prefix, f->plen)) != OK) {
                continue;
            }
            row = field_value(&js, &leaf, f->kind, v, (size_t)n);
            if (row == BAD && res->error == NULL) {
                res->error = "a binary COPY field is not of the type asked for";
            }
            if (row == BAD) {
                break;
            }
        }
        if (row == BAD || row == NOMEM) {
            rc = row;
            break;
        }
        if (row == FALLBACK) {
            entry->fallback = 1;
        } else {
            if ((rc = put1(&leaf, '}')) != OK) {
                break;
            }
            unsigned int mdlen = 0;
            if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
                EVP_DigestUpdate(ctx, leaf.data, leaf.len) != 1 ||
                EVP_DigestFinal_ex(ctx, entry->hash, &mdlen) != 1 || mdlen != 32) {
                res->error = "OpenSSL's SHA-256 failed";
                rc = BAD;
                break;
            }
        }
        res->count++;
    }
    EVP_MD_CTX_free(ctx);
    sha256_free(sha256);
    free(leaf.data);
    free(js.scratch.data);
    free(js.members);
    if (rc == OK) {
        qsort(res->entries, res->count, sizeof(Entry), entry_order);
    }
    return rc;
}

/* ---- Python ---------------------------------------------------------------------------- */

static int
read_plan(PyObject *plan, Field **fields, size_t *nfields)
{
    PyObject *seq = PySequence_Fast(plan, "plan must be a sequence of (bytes, int)");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Field *out = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Field));
    if (out == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *prefix;
        int kind;
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "Si", &prefix, &kind)) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "plan items must be (bytes, int)");
            }
            PyMem_Free(out);
            Py_DECREF(seq);
            return -1;
        }
        if (kind < 0 || kind > K_LAST) {
            PyErr_Format(PyExc_ValueError, "unknown field kind %d", kind);
            PyMem_Free(out);
            Py_DECREF(seq);
            return -1;
        }
        /* The plan's bytes stay alive with ``plan`` (the caller's) while parse runs. */
        out[i].prefix = (const unsigned char *)PyBytes_AS_STRING(prefix);
        out[i].plen = (size_t)PyBytes_GET_SIZE(prefix);
        out[i].kind = kind;
    }
    Py_DECREF(seq); /* plan itself (a tuple): the caller's reference keeps the bytes alive */
    *fields = out;
    *nfields = (size_t)n;
    return 0;
}

static PyObject *
hash_copy(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *plan;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "O!y*:hash_copy", &PyTuple_Type, &plan, &data)) {
        return NULL;
    }
    Field *fields = NULL;
    size_t nfields = 0;
    if (read_plan(plan, &fields, &nfields) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    Result res = {0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = parse(data.buf, (size_t)data.len, fields, nfields, &res);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyMem_Free(fields);
    PyObject *answer = NULL;
    if (rc == NOMEM) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc != OK) {
        PyErr_SetString(PyExc_ValueError, res.error ? res.error : "bad binary COPY stream");
        goto done;
    }
    /* Sorted by id: an id met twice sits next to its twin. */
    size_t hashed = 0, twice = 0, fallback = 0;
    for (size_t i = 0; i < res.count; i++) {
        int dup = (i > 0 && res.entries[i - 1].id == res.entries[i].id) ||
                  (i + 1 < res.count && res.entries[i + 1].id == res.entries[i].id);
        if (dup) {
            twice += i == 0 || res.entries[i - 1].id != res.entries[i].id;
        } else if (res.entries[i].fallback) {
            fallback++;
        } else {
            hashed++;
        }
    }
    PyObject *ids = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(hashed * 8));
    PyObject *hashes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(hashed * 32));
    PyObject *dups = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(twice * 8));
    PyObject *left = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(fallback * 8));
    if (ids == NULL || hashes == NULL || dups == NULL || left == NULL) {
        Py_XDECREF(ids);
        Py_XDECREF(hashes);
        Py_XDECREF(dups);
        Py_XDECREF(left);
        goto done;
    }
    char *wi = PyBytes_AS_STRING(ids), *wh = PyBytes_AS_STRING(hashes);
    char *wd = PyBytes_AS_STRING(dups), *wl = PyBytes_AS_STRING(left);
    for (size_t i = 0; i < res.count; i++) {
        const Entry *e = &res.entries[i];
        int after = i > 0 && res.entries[i - 1].id == e->id;
        int before = i + 1 < res.count && res.entries[i + 1].id == e->id;
        if (after || before) {
            if (!after) {
                memcpy(wd, &e->id, 8);
                wd += 8;
            }
        } else if (e->fallback) {
            memcpy(wl, &e->id, 8);
            wl += 8;
        } else {
            memcpy(wi, &e->id, 8);
            wi += 8;
            memcpy(wh, e->hash, 32);
            wh += 32;
        }
    }
    answer = Py_BuildValue("(NNNN)", ids, hashes, dups, left);
done:
    free(res.entries);
    return answer;
}

/* ---- reading the COPY from libpq ------------------------------------------------------- */

/* The libpq psycopg already loaded (and made the connection with), found by the caller in
 * /proc/self/maps and opened here with RTLD_NOLOAD: never a second libpq, whose idea of a
 * PGconn could differ. Its functions, looked up once (under the GIL). */
typedef int (*GetCopyData)(void *, char **, int);
typedef int (*ConsumeInput)(void *);
typedef int (*Socket)(const void *);
typedef void (*FreeMem)(void *);
static GetCopyData pq_get_copy_data;
static ConsumeInput pq_consume_input;
static Socket pq_socket;
static FreeMem pq_freemem;

static int
bind_libpq(const char *path)
{
    if (pq_get_copy_data != NULL) {
        return 0;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_Format(PyExc_OSError, "libpq %s is not loaded", path);
        return -1;
    }
    GetCopyData get = (GetCopyData)dlsym(lib, "PQgetCopyData");
    ConsumeInput consume = (ConsumeInput)dlsym(lib, "PQconsumeInput");
    Socket sock = (Socket)dlsym(lib, "PQsocket");
    FreeMem freemem = (FreeMem)dlsym(lib, "PQfreemem");
    if (get == NULL || consume == NULL || sock == NULL || freemem == NULL) {
        PyErr_Format(PyExc_OSError, "%s lacks the COPY functions", path);
        return -1;
    }
    /* the handle stays open: the library was loaded before and stays loaded */
    pq_consume_input = consume;
    pq_socket = sock;
    pq_freemem = freemem;
    pq_get_copy_data = get;
    return 0;
}

/* read_copy(pgconn_ptr, libpq_path) -> bytes: every CopyData message of a COPY TO STDOUT
 * the caller started (PQgetResult said PGRES_COPY_OUT), joined, without the GIL; the
 * caller then collects the final result. The caller holds the connection's lock. */
static PyObject *
read_copy(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long long address;
    const char *path;
    if (!PyArg_ParseTuple(args, "Ks:read_copy", &address, &path)) {
        return NULL;
    }
    if (address == 0) {
        PyErr_SetString(PyExc_ValueError, "no connection");
        return NULL;
    }
    if (bind_libpq(path) < 0) {
        return NULL;
    }
    void *conn = (void *)(uintptr_t)address;
    Buf out = {0};
    int rc = OK;
    const char *error = NULL;
    Py_BEGIN_ALLOW_THREADS
    while (1) {
        char *buffer = NULL;
        int n = pq_get_copy_data(conn, &buffer, 1);
        if (n > 0) {
            rc = put(&out, buffer, (size_t)n);
            pq_freemem(buffer);
            if (rc != OK) {
                break;
            }
            continue;
        }
        if (n == 0) { /* nothing whole buffered: wait for the socket, then read it */
            struct pollfd fd = {pq_socket(conn), POLLIN, 0};
            if (fd.fd < 0) {
                error = "the connection has no socket";
                break;
            }
            if (poll(&fd, 1, -1) < 0 && errno != EINTR) {
                error = "poll() failed on the connection's socket";
                break;
            }
            if (pq_consume_input(conn) == 0) {
                error = "the connection failed during COPY";
                break;
            }
            continue;
        }
        if (n != -1) {
            error = "the COPY failed";
        }
        break;
    }
    Py_END_ALLOW_THREADS
    if (rc == NOMEM) {
        free(out.data);
        return PyErr_NoMemory();
    }
    if (error != NULL) {
        free(out.data);
        PyErr_SetString(PyExc_OSError, error);
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    free(out.data);
    return data;
}

/* ---- a format-2 batch's leaf hash ------------------------------------------------------ */

/* The one argument of the batch functions: a format-2 batch row's ``leaves``, a whole,
 * non-zero number of 32-byte hashes. 0 with ``data`` held (the caller releases it), or -1 with
 * the exception set. */
static int
batch_leaves_arg(PyObject *args, const char *format, Py_buffer *data)
{
    if (!PyArg_ParseTuple(args, format, data)) {
        return -1;
    }
    if (data->len == 0 || data->len % 32) {
        PyBuffer_Release(data);
        PyErr_SetString(PyExc_ValueError, "batch leaves are not a whole, non-zero number of"
                                          " 32-byte hashes");
        return -1;
    }
    return 0;
}

/* batch_leaf_hash(leaves) -> bytes: SHA-256(0x02 || MTH(leaves)) over the 32-byte hashes
 * joined in ``leaves`` (auditor.evidence.batches.leaf_hash_of_joined, which stays the
 * reference): each level paired left to right, an unpaired last node carried up, in place,
 * without the GIL. */
static PyObject *
batch_leaf_hash(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer data;
    if (batch_leaves_arg(args, "y*:batch_leaf_hash", &data) < 0) {
        return NULL;
    }
    size_t count = (size_t)data.len / 32;
    unsigned char *level = malloc((size_t)data.len);
    if (level == NULL) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    unsigned char out[32];
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    memcpy(level, data.buf, (size_t)data.len);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD *sha256 = sha256_fetch();
    ok = sha256 != NULL;
    unsigned char node[65];
    node[0] = 0x01;
    unsigned int mdlen = 0;
    while (ok && ctx != NULL && count > 1) {
        size_t pairs = count / 2;
        for (size_t i = 0; i < pairs; i++) {
            memcpy(node + 1, level + 64 * i, 64);
            if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
                EVP_DigestUpdate(ctx, node, 65) != 1 ||
                EVP_DigestFinal_ex(ctx, level + 32 * i, &mdlen) != 1) {
                ok = 0;
                break;
            }
        }
        if (count % 2) {
            memmove(level + 32 * pairs, level + 32 * (count - 1), 32);
        }
        count = pairs + count % 2;
    }
    node[0] = 0x02;
    memcpy(node + 1, level, 32);
    if (ctx == NULL || !ok || EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
        EVP_DigestUpdate(ctx, node, 33) != 1 || EVP_DigestFinal_ex(ctx, out, &mdlen) != 1) {
        ok = 0;
    }
    EVP_MD_CTX_free(ctx);
    sha256_free(sha256);
    free(level);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "OpenSSL's SHA-256 failed");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

/* ---- a format-2 batch's audit paths, and a chunk's leaves against their sealed hashes --- */

/* batch_paths(leaves) -> list[bytes]: the RFC 9162 audit path of every leaf of a batch's
 * tree, each its sibling hashes joined bottom up (auditor.evidence.batches.joined_paths, which
 * stays the reference). The tree's levels are built without the GIL, as batch_leaf_hash
 * pairs them: an unpaired last node is carried up unchanged and has no sibling there. */
static PyObject *
batch_paths(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer data;
    if (batch_leaves_arg(args, "y*:batch_paths", &data) < 0) {
        return NULL;
    }
    size_t count = (size_t)data.len / 32;
    /* every level one after another: each level is at most half the one below rounded up,
     * so fewer than 2 * count + 64 nodes in all */
    unsigned char *nodes = malloc(32 * (2 * count + 64));
    size_t widths[64];
    size_t starts[64];
    int depth = 0;
    int ok = nodes != NULL;
    Py_BEGIN_ALLOW_THREADS
    EVP_MD_CTX *ctx = ok ? EVP_MD_CTX_new() : NULL;
    EVP_MD *sha256 = ok ? sha256_fetch() : NULL;
    ok = ok && ctx != NULL && sha256 != NULL;
    if (ok) {
        memcpy(nodes, data.buf, (size_t)data.len);
        widths[0] = count;
        starts[0] = 0;
        unsigned char node[65];
        node[0] = 0x01;
        unsigned int mdlen = 0;
        while (ok && widths[depth] > 1 && depth < 63) {
            size_t width = widths[depth];
            unsigned char *level = nodes + 32 * starts[depth];
            unsigned char *up = level + 32 * width;
            size_t pairs = width / 2;
            for (size_t i = 0; i < pairs; i++) {
                memcpy(node + 1, level + 64 * i, 64);
                if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
                    EVP_DigestUpdate(ctx, node, 65) != 1 ||
                    EVP_DigestFinal_ex(ctx, up + 32 * i, &mdlen) != 1) {
                    ok = 0;
                    break;
                }
            }
            if (width % 2) {
                memcpy(up + 32 * pairs, level + 32 * (width - 1), 32);
            }
            starts[depth + 1] = starts[depth] + width;
            widths[depth + 1] = pairs + width % 2;
            depth++;
        }
    }
    EVP_MD_CTX_free(ctx);
    sha256_free(sha256);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (!ok) {
        free(nodes);
        if (nodes == NULL) {
            return PyErr_NoMemory();
        }
        PyErr_SetString(PyExc_ValueError, "OpenSSL's SHA-256 failed");
        return NULL;
    }
    PyObject *out = PyList_New((Py_ssize_t)count);
    for (size_t i = 0; out != NULL && i < count; i++) {
        /* the path's length: a sibling at each level where this leaf's node has one */
        size_t len = 0;
        for (int d = 0; d < depth; d++) {
            if (((i >> d) ^ 1) < widths[d]) {
                len += 32;
            }
        }
        PyObject *path = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
        if (path == NULL) {
            Py_CLEAR(out);
            break;
        }
        unsigned char *w = (unsigned char *)PyBytes_AS_STRING(path);
        for (int d = 0; d < depth; d++) {
            size_t sibling = (i >> d) ^ 1;
            if (sibling < widths[d]) {
                memcpy(w, nodes + 32 * (starts[d] + sibling), 32);
                w += 32;
            }
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, path);
    }
    free(nodes);
    return out;
}

/* leaf_mismatches(leaves, hashes) -> list[int]: the indexes i where SHA-256(leaves[i]) is
 * not hashes[i] (None, or not 32 bytes, never matches). Both lists of bytes-like objects, of
 * one length; the hashing runs without the GIL, the lists held and not changed meanwhile
 * (their buffers are taken first and released after). */
static PyObject *
leaf_mismatches(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *leaves, *hashes;
    if (!PyArg_ParseTuple(args, "O!O!:leaf_mismatches", &PyList_Type, &leaves, &PyList_Type,
                          &hashes)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(leaves);
    if (PyList_GET_SIZE(hashes) != n) {
        PyErr_SetString(PyExc_ValueError, "leaves and hashes differ in length");
        return NULL;
    }
    Py_buffer *views = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Py_buffer));
    unsigned char *want = PyMem_Malloc((size_t)(n ? n : 1) * 33); /* 32 bytes + "present" */
    unsigned char *same = PyMem_Calloc((size_t)(n ? n : 1), 1);
    if (views == NULL || want == NULL || same == NULL) {
        PyMem_Free(views);
        PyMem_Free(want);
        PyMem_Free(same);
        return PyErr_NoMemory();
    }
    Py_ssize_t taken = 0;
    int failed = 0;
    for (; taken < n; taken++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(leaves, taken), &views[taken], PyBUF_SIMPLE) < 0) {
            failed = 1;
            break;
        }
        PyObject *h = PyList_GET_ITEM(hashes, taken);
        unsigned char *slot = want + 33 * taken;
        slot[32] = 0;
        if (h != Py_None) {
            Py_buffer hv;
            if (PyObject_GetBuffer(h, &hv, PyBUF_SIMPLE) < 0) {
                PyBuffer_Release(&views[taken]);
                failed = 1;
                break;
            }
            if (hv.len == 32) {
                memcpy(slot, hv.buf, 32);
                slot[32] = 1;
            }
            PyBuffer_Release(&hv);
        }
    }
    int ok = !failed;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_MD *sha256 = sha256_fetch();
        ok = ctx != NULL && sha256 != NULL;
        unsigned char digest[32];
        unsigned int mdlen = 0;
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            if (!want[33 * i + 32]) {
                continue;
            }
            if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
                EVP_DigestUpdate(ctx, views[i].buf, (size_t)views[i].len) != 1 ||
                EVP_DigestFinal_ex(ctx, digest, &mdlen) != 1) {
                ok = 0;
                break;
            }
            same[i] = memcmp(digest, want + 33 * i, 32) == 0;
        }
        EVP_MD_CTX_free(ctx);
        sha256_free(sha256);
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < taken; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyObject *out = NULL;
    if (failed) {
        /* the exception of PyObject_GetBuffer is set */
    } else if (!ok) {
        PyErr_SetString(PyExc_ValueError, "OpenSSL's SHA-256 failed");
    } else if ((out = PyList_New(0)) != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            if (same[i]) {
                continue;
            }
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(out, index) < 0) {
                Py_XDECREF(index);
                Py_CLEAR(out);
                break;
            }
            Py_DECREF(index);
        }
    }
    PyMem_Free(views);
    PyMem_Free(want);
    PyMem_Free(same);
    return out;
}

/* ---- an evidence export's chunk: NDJSON and CSV from one binary COPY ---------------------
 *
 * export_copy(plan, data, order, positions, hashes, csv_columns, account) reads a binary
 * COPY of `SELECT id, <plan's columns>` (one export chunk's events, in whatever order
 * PostgreSQL sends them) and writes, for each id of ``order`` (native int64: the chunk's
 * record order), the row's events.ndjson line (its leaf bytes without the 0x00 prefix:
 * exactly what hash_copy hashes) and its events.csv line (auditor/evidence/pack_csv.py's
 * bytes: the ``positions`` value, 0 for none, then the columns ``csv_columns`` names, each
 * as PostgreSQL's text output, CSV-quoted as pack_csv._quoted), each ending in '\n'. It
 * checks each leaf against ``hashes`` (a list: 32 bytes, or anything else, which never
 * matches), all without the GIL. Answers (ndjson, ndjson_ends, csv, csv_ends, left,
 * mismatched, accounts): the lines joined, the end offset of each row's line (native int64;
 * nothing written for a row left to Python), the indexes left to Python (the rules at the
 * top of this file; an id the stream lacks), the indexes whose leaf is not its hash, and the
 * set of the rows' accounts (column ``account``, text; None for NULL). An id the stream
 * holds twice is answered with its last row (as the Python path's dict by id). A malformed
 * stream is a ValueError. */

typedef struct {
    int64_t id;
    size_t index;               /* in the stream: the last of equal ids wins */
    const unsigned char *start; /* its first field after the id (the row is checked) */
} XRow;

static int
xrow_order(const void *a, const void *b)
{
    const XRow *x = a, *y = b;
    if (x->id != y->id) {
        return (x->id > y->id) - (x->id < y->id);
    }
    return (x->index > y->index) - (x->index < y->index);
}

/* The last row (in stream order) with ``id`` among rows sorted by (id, index), or NULL. */
static const XRow *
xrow_find(const XRow *rows, size_t count, int64_t id)
{
    size_t lo = 0, hi = count; /* to the first row with an id above ``id`` */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rows[mid].id <= id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo > 0 && rows[lo - 1].id == id ? &rows[lo - 1] : NULL;
}

static const unsigned char CSV_SPECIAL[256] = {[','] = 1, ['"'] = 1, ['\n'] = 1, ['\r'] = 1};

/* pack_csv._quoted: quoted when empty or holding , " \n \r; inner quotes doubled. Byte by
 * byte: a payload's JSON text has a quote every few bytes (memchr per quote was 4 us a
 * row, measured). */
static int
csv_quoted(Buf *out, const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n && !CSV_SPECIAL[s[i]]) {
        i++;
    }
    if (n > 0 && i == n) {
        return put(out, s, n);
    }
    if (reserve(out, 2 * n + 2) != OK) {
        return NOMEM;
    }
    unsigned char *w = out->data + out->len;
    *w++ = '"';
    memcpy(w, s, i);
    w += i;
    for (; i < n; i++) {
        if (s[i] == '"') {
            *w++ = '"';
        }
        *w++ = s[i];
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return OK;
}

/* timestamptz_out at UTC in the ISO DateStyle: 2026-12-03 03:22:20.1234+00 (the fraction
 * without trailing zeros, none when zero). */
static int
csv_timestamp(Buf *out, int64_t us)
{
    int64_t y, m, d, secs, frac;
    if (civil(us, &y, &m, &d, &secs, &frac) != OK) {
        return FALLBACK;
    }
    char s[32] = "0000-00-00 00:00:00.000000";
    digits(s, y, 4);
    digits(s + 5, m, 2);
    digits(s + 8, d, 2);
    digits(s + 11, secs / 3600, 2);
    digits(s + 14, secs / 60 % 60, 2);
    digits(s + 17, secs % 60, 2);
    size_t n = 19;
    if (frac) {
        digits(s + 20, frac, 6);
        n = 26;
        while (s[n - 1] == '0') {
            n--;
        }
    }
    s[n++] = '+';
    s[n++] = '0';
    s[n++] = '0';
    return put(out, s, n);
}

static int
csv_uuid(Buf *out, const unsigned char *p)
{
    char s[36];
    char *w = s;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *w++ = '-';
        }
        *w++ = HEX[p[i] >> 4];
        *w++ = HEX[p[i] & 15];
    }
    return put(out, s, 36);
}

/* One value's CSV field (not NULL): OK, FALLBACK, NOMEM or BAD. The leaf is written first,
 * so lengths and the jsonb version byte are already checked. */
static int
csv_value(Buf *out, int kind, const unsigned char *p, size_t n)
{
    switch (kind) {
    case K_TEXT:
        return csv_quoted(out, p, n);
    case K_INT8:
        return integer(out, (int64_t)be(p, 8));
    case K_INT4:
        return integer(out, (int32_t)(uint32_t)be(p, 4));
    case K_UUID:
        return csv_uuid(out, p);
    case K_TIMESTAMPTZ:
        return csv_timestamp(out, (int64_t)be(p, 8));
    case K_JSONB:
        return csv_quoted(out, p + 1, n - 1); /* jsonb::text: its text after the version */
    default:
        return BAD;
    }
}

typedef struct {
    const unsigned char *p;
    int32_t n; /* -1: NULL */
} Value;

typedef struct {
    /* in */
    const unsigned char *data;
    size_t size;
    const Field *fields;
    size_t nfields;
    const int *csv_columns;
    size_t ncsv;
    size_t account;
    const int64_t *order; /* n ids, maybe unaligned: read with memcpy */
    const int64_t *positions;
    const unsigned char *want; /* n * 33: the hash, then 1 if there is one */
    size_t n;
    /* out */
    Buf ndjson;
    Buf csv;
    int64_t *ndjson_ends;
    int64_t *csv_ends;
    unsigned char *state; /* per row: 0 written, 1 left to Python, 2 leaf is not its hash */
    Value *accounts;      /* per row; n == -2: no row */
    const char *error;
} Export;

/* The rows' places, checked; then each of ``order`` written. OK, NOMEM or BAD. */
static int
export_rows(Export *x)
{
    const unsigned char *p = x->data;
    const unsigned char *end = x->data + x->size;
    size_t columns = 0; /* besides the id */
    for (size_t i = 0; i < x->nfields; i++) {
        columns += x->fields[i].kind != K_CONST;
    }
    if (x->size < 19 || memcmp(p, SIGNATURE, 11) != 0) {
        x->error = "not a binary COPY stream (no PGCOPY signature)";
        return BAD;
    }
    uint64_t extension = be(p + 15, 4);
    if (be(p + 11, 4) & 0xffff0000u) {
        x->error = "binary COPY header has critical flags this parser does not know";
        return BAD;
    }
    p += 19;
    if (extension > (uint64_t)(end - p)) {
        x->error = "binary COPY header extension runs past the end";
        return BAD;
    }
    p += extension;
    XRow *rows = NULL;
    size_t count = 0, cap = 0;
    int rc = OK;
    while (1) { /* 1: where each row is, its framing checked */
        if (end - p < 2) {
            x->error = "binary COPY stream ends without its trailer";
            rc = BAD;
            break;
        }
        int16_t fields = (int16_t)be(p, 2);
        p += 2;
        if (fields == -1) {
            if (p != end) {
                x->error = "bytes after the binary COPY trailer";
                rc = BAD;
            }
            break;
        }
        if (fields < 0 || (size_t)fields != columns + 1) {
            x->error = "a binary COPY row has another number of fields than asked for";
            rc = BAD;
            break;
        }
        if (end - p < 12 || be(p, 4) != 8) {
            x->error = "a binary COPY row's id is not a bigint";
            rc = BAD;
            break;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 1024;
            XRow *more = realloc(rows, cap * sizeof(XRow));
            if (more == NULL) {
                rc = NOMEM;
                break;
            }
            rows = more;
        }
        rows[count].id = (int64_t)be(p + 4, 8);
        rows[count].index = count;
        p += 12;
        rows[count].start = p;
        for (size_t c = 0; c < columns; c++) {
            if (end - p < 4) {
                x->error = "binary COPY stream truncated in a field length";
                rc = BAD;
                break;
            }
            int32_t n = (int32_t)(uint32_t)be(p, 4);
            p += 4;
            if (n < -1 || (n >= 0 && (size_t)n > (size_t)(end - p))) {
                x->error = "a binary COPY field length runs past the end";
                rc = BAD;
                break;
            }
            if (n > 0) {
                p += n;
            }
        }
        if (rc != OK) {
            break;
        }
        count++;
    }
    if (rc != OK) {
        free(rows);
        return rc;
    }
    qsort(rows, count, sizeof(XRow), xrow_order);

    Value *values = malloc((columns ? columns : 1) * sizeof(Value));
    int *kinds = malloc((columns ? columns : 1) * sizeof(int));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD *sha256 = sha256_fetch();
    if (values == NULL || kinds == NULL || ctx == NULL || sha256 == NULL) {
        rc = NOMEM;
        goto done;
    }
    for (size_t i = 0, c = 0; i < x->nfields; i++) {
        if (x->fields[i].kind != K_CONST) {
            kinds[c++] = x->fields[i].kind;
        }
    }
    if (kinds[x->account] != K_TEXT) {
        x->error = "the account column is not text";
        rc = BAD;
        goto done;
    }
    /* About the stream's size each (the leaf and the CSV line hold each value about as
     * the stream does): no copying as they grow */
    if (reserve(&x->ndjson, x->size + 4096) != OK || reserve(&x->csv, x->size + 4096) != OK) {
        rc = NOMEM;
        goto done;
    }
    Json js = {0};
    for (size_t i = 0; i < x->n; i++) { /* 2: each row of the order written */
        int64_t id;
        memcpy(&id, x->order + i, 8);
        const XRow *row = xrow_find(rows, count, id);
        size_t ndjson_at = x->ndjson.len, csv_at = x->csv.len;
        x->accounts[i].n = -2;
        int state = FALLBACK;
        if (row != NULL) {
            p = row->start;
            for (size_t c = 0; c < columns; c++) { /* checked in 1 */
                values[c].n = (int32_t)(uint32_t)be(p, 4);
                values[c].p = p + 4;
                p += 4 + (values[c].n > 0 ? values[c].n : 0);
            }
            x->accounts[i] = values[x->account];
            /* The leaf, as parse() writes it (without the prefix). */
            Buf *leaf = &x->ndjson;
            state = put1(leaf, '{');
            int first = 1;
            for (size_t f = 0, c = 0; state == OK && f < x->nfields; f++) {
                const Field *field = &x->fields[f];
                if (field->kind == K_CONST) {
                    if (!first && (state = put1(leaf, ',')) != OK) {
                        break;
                    }
                    state = put(leaf, field->prefix, field->plen);
                    first = 0;
                    continue;
                }
                const Value *v = &values[c++];
                if (v->n == -1) {
                    continue; /* NULL: the member is left out */
                }
                if (!first && (state = put1(leaf, ',')) != OK) {
                    break;
                }
                first = 0;
                if ((state = put(leaf, field->prefix, field->plen)) != OK) {
                    break;
                }
                state = field_value(&js, leaf, field->kind, v->p, (size_t)v->n);
            }
            if (state == OK) {
                state = put1(leaf, '}');
            }
            /* The CSV line. */
            Buf *csv = &x->csv;
            int64_t position;
            memcpy(&position, x->positions + i, 8);
            if (state == OK && position != 0) {
                state = integer(csv, position);
            }
            for (size_t k = 0; state == OK && k < x->ncsv; k++) {
                if ((state = put1(csv, ',')) != OK) {
                    break;
                }
                const Value *v = &values[x->csv_columns[k]];
                if (v->n != -1) {
                    state = csv_value(csv, kinds[x->csv_columns[k]], v->p, (size_t)v->n);
                }
            }
            if (state == OK) {
                state = put1(csv, '\n');
            }
        }
        if (state == FALLBACK) {
            x->ndjson.len = ndjson_at;
            x->csv.len = csv_at;
            x->state[i] = 1;
        } else if (state != OK) {
            if (state == BAD && x->error == NULL) {
                x->error = "a binary COPY field is not of the type asked for";
            }
            rc = state;
            break;
        } else {
            const unsigned char *want = x->want + 33 * i;
            unsigned char digest[32];
            unsigned int mdlen = 0;
            x->state[i] = 2;
            if (want[32]) {
                if (EVP_DigestInit_ex(ctx, sha256, NULL) != 1 ||
                    EVP_DigestUpdate(ctx, "\x00", 1) != 1 ||
                    EVP_DigestUpdate(ctx, x->ndjson.data + ndjson_at,
                                     x->ndjson.len - ndjson_at) != 1 ||
                    EVP_DigestFinal_ex(ctx, digest, &mdlen) != 1 || mdlen != 32) {
                    x->error = "OpenSSL's SHA-256 failed";
                    rc = BAD;
                    break;
                }
                if (memcmp(digest, want, 32) == 0) {
                    x->state[i] = 0;
                }
            }
            if ((rc = put1(&x->ndjson, '\n')) != OK) {
                break;
            }
        }
        x->ndjson_ends[i] = (int64_t)x->ndjson.len;
        x->csv_ends[i] = (int64_t)x->csv.len;
    }
    free(js.scratch.data);
    free(js.members);
done:
    EVP_MD_CTX_free(ctx);
    sha256_free(sha256);
    free(values);
    free(kinds);
    free(rows);
    return rc;
}

static PyObject *
index_list(const unsigned char *state, size_t n, unsigned char which)
{
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < n; i++) {
        if (state[i] != which) {
            continue;
        }
        PyObject *index = PyLong_FromSize_t(i);
        if (index == NULL || PyList_Append(out, index) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(index);
    }
    return out;
}

static PyObject *
export_copy(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *plan, *hashes, *csv_spec;
    Py_buffer data, order, positions;
    Py_ssize_t account;
    if (!PyArg_ParseTuple(args, "O!y*y*y*O!O!n:export_copy", &PyTuple_Type, &plan, &data,
                          &order, &positions, &PyList_Type, &hashes, &PyTuple_Type, &csv_spec,
                          &account)) {
        return NULL;
    }
    PyObject *answer = NULL;
    Field *fields = NULL;
    int *csv_columns = NULL;
    unsigned char *want = NULL;
    Export x = {0};
    size_t n = (size_t)order.len / 8;
    if (order.len % 8 != 0 || positions.len != order.len ||
        PyList_GET_SIZE(hashes) != (Py_ssize_t)n) {
        PyErr_SetString(PyExc_ValueError,
                        "order, positions and hashes must be of one length (int64s, a list)");
        goto done;
    }
    if (read_plan(plan, &fields, &x.nfields) < 0) {
        goto done;
    }
    size_t columns = 0;
    for (size_t i = 0; i < x.nfields; i++) {
        columns += fields[i].kind != K_CONST;
    }
    Py_ssize_t ncsv = PyTuple_GET_SIZE(csv_spec);
    csv_columns = PyMem_Malloc((size_t)(ncsv ? ncsv : 1) * sizeof(int));
    want = PyMem_Calloc(n ? n : 1, 33);
    x.ndjson_ends = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    x.csv_ends = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
    x.state = PyMem_Calloc(n ? n : 1, 1);
    x.accounts = PyMem_Malloc((n ? n : 1) * sizeof(Value));
    if (csv_columns == NULL || want == NULL || x.ndjson_ends == NULL || x.csv_ends == NULL ||
        x.state == NULL || x.accounts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < ncsv; k++) {
        long c = PyLong_AsLong(PyTuple_GET_ITEM(csv_spec, k));
        if (c == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (c < 0 || (size_t)c >= columns) {
            PyErr_SetString(PyExc_ValueError, "a CSV column is not one of the plan's");
            goto done;
        }
        csv_columns[k] = (int)c;
        for (size_t i = 0, at = 0; i < x.nfields; i++) {
            if (fields[i].kind == K_CONST) {
                continue;
            }
            if (at++ == (size_t)c && fields[i].kind == K_BYTEA) {
                PyErr_SetString(PyExc_ValueError, "events.csv is not written for bytea here");
                goto done;
            }
        }
    }
    if (account < 0 || (size_t)account >= columns) {
        PyErr_SetString(PyExc_ValueError, "the account column is not one of the plan's");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *h = PyList_GET_ITEM(hashes, (Py_ssize_t)i);
        if (h == Py_None) {
            continue;
        }
        Py_buffer hv;
        if (PyObject_GetBuffer(h, &hv, PyBUF_SIMPLE) < 0) {
            goto done;
        }
        if (hv.len == 32) {
            memcpy(want + 33 * i, hv.buf, 32);
            want[33 * i + 32] = 1;
        }
        PyBuffer_Release(&hv);
    }
    x.data = data.buf;
    x.size = (size_t)data.len;
    x.fields = fields;
    x.csv_columns = csv_columns;
    x.ncsv = (size_t)ncsv;
    x.account = (size_t)account;
    x.order = order.buf;
    x.positions = positions.buf;
    x.want = want;
    x.n = n;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = export_rows(&x);
    Py_END_ALLOW_THREADS
    if (rc == NOMEM) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc != OK) {
        PyErr_SetString(PyExc_ValueError, x.error ? x.error : "bad binary COPY stream");
        goto done;
    }
    PyObject *accounts = PySet_New(NULL);
    const unsigned char *last = NULL; /* the account last added: runs of one account */
    int32_t last_len = -2;
    for (size_t i = 0; accounts != NULL && i < n; i++) {
        const Value *v = &x.accounts[i];
        if (v->n == -2 ||
            (v->n == last_len && (last_len <= 0 || memcmp(v->p, last, (size_t)last_len) == 0))) {
            continue;
        }
        last = v->p;
        last_len = v->n;
        PyObject *name = last_len < 0 ? Py_NewRef(Py_None)
                                      : PyUnicode_DecodeUTF8((const char *)last, last_len,
                                                             "strict");
        if (name == NULL || PySet_Add(accounts, name) < 0) {
            Py_CLEAR(accounts);
        }
        Py_XDECREF(name);
    }
    PyObject *left = index_list(x.state, n, 1);
    PyObject *mismatched = index_list(x.state, n, 2);
    if (accounts != NULL && left != NULL && mismatched != NULL) {
        /* "" for an empty buffer: y# makes None of a NULL pointer */
        answer = Py_BuildValue(
            "(y#y#y#y#OOO)", x.ndjson.data ? (const char *)x.ndjson.data : "",
            (Py_ssize_t)x.ndjson.len, (const char *)x.ndjson_ends, (Py_ssize_t)(n * 8),
            x.csv.data ? (const char *)x.csv.data : "", (Py_ssize_t)x.csv.len,
            (const char *)x.csv_ends, (Py_ssize_t)(n * 8), left, mismatched, accounts);
    }
    Py_XDECREF(left);
    Py_XDECREF(mismatched);
    Py_XDECREF(accounts);
done:
    PyMem_Free(fields);
    PyMem_Free(csv_columns);
    PyMem_Free(want);
    PyMem_Free(x.ndjson_ends);
    PyMem_Free(x.csv_ends);
    PyMem_Free(x.state);
    PyMem_Free(x.accounts);
    free(x.ndjson.data);
    free(x.csv.data);
    PyBuffer_Release(&data);
    PyBuffer_Release(&order);
    PyBuffer_Release(&positions);
    return answer;
}

static PyMethodDef methods[] = {
    {"batch_paths", batch_paths, METH_VARARGS,
     "batch_paths(leaves) -> list[bytes]: each leaf's audit path in a format-2 batch's tree."},
    {"leaf_mismatches", leaf_mismatches, METH_VARARGS,
     "leaf_mismatches(leaves, hashes) -> list[int]: where SHA-256(leaf) is not the hash."},
    {"batch_leaf_hash", batch_leaf_hash, METH_VARARGS,
     "batch_leaf_hash(leaves) -> bytes: a format-2 batch row's leaf hash over its leaves."},
    {"read_copy", read_copy, METH_VARARGS,
     "read_copy(pgconn_ptr, libpq_path) -> bytes: a started COPY TO STDOUT, read whole."},
    {"hash_copy", hash_copy, METH_VARARGS,
     "hash_copy(plan, data) -> (ids, hashes, twice, fallback): leaf hashes of a binary COPY."},
    /* evidence export (auditor/evidence/pack_rows.py) */
    {"export_copy", export_copy, METH_VARARGS,
     "export_copy(plan, data, order, positions, hashes, csv_columns, account) -> (ndjson,"
     " ndjson_ends, csv, csv_ends, left, mismatched, accounts): an export chunk's lines."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_leafcopy", "Leaf hashes from a binary COPY stream.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__leafcopy(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddIntConstant(m, "K_CONST", K_CONST) < 0 ||
        PyModule_AddIntConstant(m, "K_TEXT", K_TEXT) < 0 ||
        PyModule_AddIntConstant(m, "K_INT8", K_INT8) < 0 ||
        PyModule_AddIntConstant(m, "K_INT4", K_INT4) < 0 ||
        PyModule_AddIntConstant(m, "K_UUID", K_UUID) < 0 ||
        PyModule_AddIntConstant(m, "K_TIMESTAMPTZ", K_TIMESTAMPTZ) < 0 ||
        PyModule_AddIntConstant(m, "K_JSONB", K_JSONB) < 0 ||
        PyModule_AddIntConstant(m, "K_BYTEA", K_BYTEA) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
