/* Leaf bytes in C: RFC 8785 canonical JSON of a row's audited fields (docs/evidence.md).
 *
 * An accelerator, never a second definition: it writes exactly the bytes of
 * auditor.evidence.canonical.canonical_bytes (of leaves.leaf_object), or returns None, and
 * the caller then takes the Python path (auditor/evidence/leaves.py), which stays the
 * reference. None is returned for whatever this file does not handle exactly:
 *
 * - any float (RFC 8785's number form is the Python reference's job), integers outside
 *   int64, bool/None/str/int/list/dict subclasses and every other type;
 * - object keys with a character beyond U+FFFF (RFC 8785 sorts keys by UTF-16 code units;
 *   for keys within the BMP that is code point order, which is what is used here);
 * - surrogate code points (no UTF-8 form: the reference refuses them);
 * - nesting deeper than MAX_DEPTH;
 * - timestamps that are naive, not exact datetimes, or not at offset zero; UUIDs that are
 *   not exact uuid.UUID; bytes that are not exact bytes; inet values that are not a str
 *   with a prefix length; JSON text that the given loads() refuses.
 *
 * Strings are written as canonical.py writes them: UTF-8, with only '"', '\' and the
 * controls below U+0020 escaped (\b \t \n \f \r short, the rest as lowercase \u00xx).
 *
 * Errors: a MemoryError (or an exception that is not an Exception, e.g. KeyboardInterrupt)
 * propagates; any other exception raised by Python code this calls (loads, utcoffset, the
 * UUID's int) is cleared and the answer is None, so the Python path meets it again. No
 * Python code runs while a container is walked (only exact builtin types are read), so the
 * borrowed references of that walk stay valid.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define STACK_BYTES 4096
#define SMALL_DICT 16
#define CHUNK_CHARS 4096

enum { DONE = 0, UNSUPPORTED = 1, FAILED = -1 };

enum kind {
    K_TEXT,
    K_INTEGER,
    K_TIMESTAMP,
    K_UUID,
    K_BYTES,
    K_ARRAY,
    K_INET,
    K_JSON,   /* a jsonb column: JSON text (str or bytes, read by loads) or Parsed */
    K_VALUE,  /* a jsonb column given as its parsed value; Python None is JSON null */
    K_SOURCE, /* the constant "source" member */
};

static const char *const KIND_NAMES[] = {
    "text", "integer", "timestamp", "uuid", "bytes", "array", "inet", "json", "value", NULL,
};

/* ---- output buffer --------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    int heap;
} Buf;

static int
grow(Buf *b, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return FAILED;
    }
    Py_ssize_t need = b->len + extra;
    Py_ssize_t cap = b->cap;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    char *data;
    if (b->heap) {
        data = PyMem_Realloc(b->data, (size_t)cap);
    }
    else {
        data = PyMem_Malloc((size_t)cap);
        if (data != NULL) {
            memcpy(data, b->data, (size_t)b->len);
        }
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    b->data = data;
    b->cap = cap;
    b->heap = 1;
    return DONE;
}

static inline int
reserve(Buf *b, Py_ssize_t extra)
{
    if (extra <= b->cap - b->len) {
        return DONE;
    }
    return grow(b, extra);
}

static inline int
put(Buf *b, const char *text, Py_ssize_t n)
{
    if (reserve(b, n) < 0) {
        return FAILED;
    }
    memcpy(b->data + b->len, text, (size_t)n);
    b->len += n;
    return DONE;
}

static inline int
put_char(Buf *b, char c)
{
    if (reserve(b, 1) < 0) {
        return FAILED;
    }
    b->data[b->len++] = c;
    return DONE;
}

/* What an entry point returns for its buffer: the bytes written (DONE), None (UNSUPPORTED: the
 * Python path takes it), or NULL with the exception set (FAILED); the buffer is freed. */
static PyObject *
finish(Buf *b, int r)
{
    PyObject *result = NULL;
    if (r == DONE) {
        result = PyBytes_FromStringAndSize(b->data, b->len);
    }
    else if (r == UNSUPPORTED) {
        result = Py_NewRef(Py_None);
    }
    if (b->heap) {
        PyMem_Free(b->data);
    }
    return result;
}

/* An error raised by Python code this called: None (the Python path meets it again),
 * unless it is a MemoryError or not an Exception at all. */
static int
called_failed(void)
{
    if (PyErr_ExceptionMatches(PyExc_MemoryError) ||
        !PyErr_ExceptionMatches(PyExc_Exception)) {
        return FAILED;
    }
    PyErr_Clear();
    return UNSUPPORTED;
}

/* ---- strings --------------------------------------------------------------------------- */

/* 1 where an ASCII byte must be escaped: the controls, '"' and '\'. */
static unsigned char ESCAPE[128];
static const char HEX[] = "0123456789abcdef";

/* Whether any of eight ASCII bytes must be escaped (exact for bytes below 0x80: a byte
 * below 0x20, or one equal to '"' or '\'). */
static inline int
needs_escape8(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t w;
    memcpy(&w, p, 8);
    uint64_t low = (w - ones * 0x20) & ~w & highs;
    uint64_t quote = w ^ (ones * '"');
    uint64_t backslash = w ^ (ones * '\\');
    quote = (quote - ones) & ~quote & highs;
    backslash = (backslash - ones) & ~backslash & highs;
    return (low | quote | backslash) != 0;
}

static inline char *
put_escape(char *out, Py_UCS4 c)
{
    *out++ = '\\';
    switch (c) {
    case '"': *out++ = '"'; break;
    case '\\': *out++ = '\\'; break;
    case '\b': *out++ = 'b'; break;
    case '\t': *out++ = 't'; break;
    case '\n': *out++ = 'n'; break;
    case '\f': *out++ = 'f'; break;
    case '\r': *out++ = 'r'; break;
    default:
        *out++ = 'u';
        *out++ = '0';
        *out++ = '0';
        *out++ = HEX[c >> 4];
        *out++ = HEX[c & 15];
    }
    return out;
}

/* One chunk of code points of a str of any kind into out (room for 6 bytes a code point);
 * returns the new end, or NULL at a surrogate code point. */
#define WRITE_CHUNK(TYPE)                                                                  \
    static char *write_chunk_##TYPE(char *out, const TYPE *p, Py_ssize_t n)                \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            Py_UCS4 c = p[i];                                                              \
            if (c < 0x80) {                                                                \
                if (ESCAPE[c]) {                                                           \
                    out = put_escape(out, c);                                              \
                }                                                                          \
                else {                                                                     \
                    *out++ = (char)c;                                                      \
                }                                                                          \
            }                                                                              \
            else if (c < 0x800) {                                                          \
                *out++ = (char)(0xc0 | (c >> 6));                                          \
                *out++ = (char)(0x80 | (c & 0x3f));                                        \
            }                                                                              \
            else if (c < 0x10000) {                                                        \
                if (c >= 0xd800 && c <= 0xdfff) {                                          \
                    return NULL;                                                           \
                }                                                                          \
                *out++ = (char)(0xe0 | (c >> 12));                                         \
                *out++ = (char)(0x80 | ((c >> 6) & 0x3f));                                 \
                *out++ = (char)(0x80 | (c & 0x3f));                                        \
            }                                                                              \
            else {                                                                         \
                *out++ = (char)(0xf0 | (c >> 18));                                         \
                *out++ = (char)(0x80 | ((c >> 12) & 0x3f));                                \
                *out++ = (char)(0x80 | ((c >> 6) & 0x3f));                                 \
                *out++ = (char)(0x80 | (c & 0x3f));                                        \
            }                                                                              \
        }                                                                                  \
        return out;                                                                        \
    }

WRITE_CHUNK(Py_UCS1)
WRITE_CHUNK(Py_UCS2)
WRITE_CHUNK(Py_UCS4)

/* A str's canonical (PEP 393) form: always there since 3.12; before, a string made by the
 * deprecated wstr APIs gets it on first use. */
static inline int
ready(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    return PyUnicode_READY(s);
#else
    (void)s;
    return 0;
#endif
}

/* An exact str as a JSON string. */
static int
write_str(Buf *b, PyObject *s)
{
    if (ready(s) < 0) {
        return FAILED;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (put_char(b, '"') < 0) {
        return FAILED;
    }
    if (PyUnicode_IS_ASCII(s)) {
        /* Runs without escapes copied whole (nearly every string of a GWS payload is one),
         * found eight bytes at a time. */
        const unsigned char *p = data;
        Py_ssize_t start = 0;
        for (;;) {
            Py_ssize_t i = start;
            while (i + 8 <= n && !needs_escape8(p + i)) {
                i += 8;
            }
            while (i < n && !ESCAPE[p[i]]) {
                i++;
            }
            if (reserve(b, i - start + 7) < 0) {
                return FAILED;
            }
            memcpy(b->data + b->len, p + start, (size_t)(i - start));
            b->len += i - start;
            if (i == n) {
                break;
            }
            b->len = put_escape(b->data + b->len, p[i]) - b->data;
            start = i + 1;
        }
        b->data[b->len++] = '"';
        return DONE;
    }
    /* Chunk by chunk, so a long string never reserves six times its length at once. */
    for (Py_ssize_t at = 0; at < n; at += CHUNK_CHARS) {
        Py_ssize_t count = n - at < CHUNK_CHARS ? n - at : CHUNK_CHARS;
        if (reserve(b, count * 6) < 0) {
            return FAILED;
        }
        char *out = b->data + b->len;
        if (kind == PyUnicode_1BYTE_KIND) {
            out = write_chunk_Py_UCS1(out, (const Py_UCS1 *)data + at, count);
        }
        else if (kind == PyUnicode_2BYTE_KIND) {
            out = write_chunk_Py_UCS2(out, (const Py_UCS2 *)data + at, count);
        }
        else {
            out = write_chunk_Py_UCS4(out, (const Py_UCS4 *)data + at, count);
        }
        if (out == NULL) {
            return UNSUPPORTED; /* a surrogate code point: no UTF-8 form */
        }
        b->len = out - b->data;
    }
    return put_char(b, '"');
}

/* ---- numbers --------------------------------------------------------------------------- */

static int
write_int(Buf *b, PyObject *v)
{
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        return UNSUPPORTED;
    }
    if (x == -1 && PyErr_Occurred()) {
        return FAILED;
    }
    char digits[24];
    char *end = digits + sizeof digits;
    char *p = end;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0) {
        *--p = '-';
    }
    return put(b, p, end - p);
}

/* ---- JSON values ----------------------------------------------------------------------- */

typedef struct {
    PyObject *key;
    PyObject *value;
} Entry;

/* Code point order; for keys within the BMP (the only ones taken) that is the UTF-16
 * order RFC 8785 sorts by. */
static int
key_cmp(PyObject *a, PyObject *b)
{
    Py_ssize_t la = PyUnicode_GET_LENGTH(a), lb = PyUnicode_GET_LENGTH(b);
    Py_ssize_t n = la < lb ? la : lb;
    int ka = PyUnicode_KIND(a), kb = PyUnicode_KIND(b);
    const void *da = PyUnicode_DATA(a), *db = PyUnicode_DATA(b);
    if (ka == PyUnicode_1BYTE_KIND && kb == PyUnicode_1BYTE_KIND) {
        const unsigned char *pa = da, *pb = db; /* short keys: no call to memcmp */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (pa[i] != pb[i]) {
                return pa[i] < pb[i] ? -1 : 1;
            }
        }
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 ca = PyUnicode_READ(ka, da, i), cb = PyUnicode_READ(kb, db, i);
            if (ca != cb) {
                return ca < cb ? -1 : 1;
            }
        }
    }
    return la < lb ? -1 : la > lb;
}

static int
entry_cmp(const void *a, const void *b)
{
    return key_cmp(((const Entry *)a)->key, ((const Entry *)b)->key);
}

static int write_value(Buf *b, PyObject *v, int depth);

static int
write_dict(Buf *b, PyObject *d, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(d);
    if (n == 0) {
        return put(b, "{}", 2);
    }
    Entry small[SMALL_DICT];
    Entry *entries = small;
    if (n > SMALL_DICT) {
        if ((size_t)n > PY_SSIZE_T_MAX / sizeof(Entry)) {
            PyErr_NoMemory();
            return FAILED;
        }
        entries = PyMem_Malloc((size_t)n * sizeof(Entry));
        if (entries == NULL) {
            PyErr_NoMemory();
            return FAILED;
        }
    }
    int result = UNSUPPORTED;
    Py_ssize_t pos = 0, count = 0;
    PyObject *key, *value;
    while (PyDict_Next(d, &pos, &key, &value)) {
        if (count == n || !PyUnicode_CheckExact(key)) {
            goto done; /* a key that is no str */
        }
        if (ready(key) < 0) {
            result = FAILED;
            goto done;
        }
        if (PyUnicode_KIND(key) == PyUnicode_4BYTE_KIND) {
            goto done; /* a key beyond U+FFFF */
        }
        entries[count].key = key;
        entries[count].value = value;
        count++;
    }
    if (count != n) {
        goto done;
    }
    if (n <= SMALL_DICT) { /* insertion sort: GWS objects have a few keys each */
        for (Py_ssize_t i = 1; i < n; i++) {
            Entry e = entries[i];
            Py_ssize_t j = i;
            while (j > 0 && key_cmp(entries[j - 1].key, e.key) > 0) {
                entries[j] = entries[j - 1];
                j--;
            }
            entries[j] = e;
        }
    }
    else {
        qsort(entries, (size_t)n, sizeof(Entry), entry_cmp);
    }
    if ((result = put_char(b, '{')) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i && (result = put_char(b, ',')) < 0) {
            goto done;
        }
        if ((result = write_str(b, entries[i].key)) != DONE) {
            goto done;
        }
        if ((result = put_char(b, ':')) < 0) {
            goto done;
        }
        if ((result = write_value(b, entries[i].value, depth + 1)) != DONE) {
            goto done;
        }
    }
    result = put_char(b, '}');
done:
    if (entries != small) {
        PyMem_Free(entries);
    }
    return result;
}

static int
write_sequence(Buf *b, PyObject *seq, int depth)
{
    int r;
    if ((r = put_char(b, '[')) < 0) {
        return r;
    }
    /* The size read at every step: nothing here can change it, but no read past it. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        if (i && (r = put_char(b, ',')) < 0) {
            return r;
        }
        if ((r = write_value(b, PySequence_Fast_GET_ITEM(seq, i), depth + 1)) != DONE) {
            return r;
        }
    }
    return put_char(b, ']');
}

static int
write_value(Buf *b, PyObject *v, int depth)
{
    PyTypeObject *type = Py_TYPE(v);
    if (type == &PyUnicode_Type) {
        return write_str(b, v);
    }
    if (type == &PyLong_Type) {
        return write_int(b, v);
    }
    if (depth > MAX_DEPTH) {
        return UNSUPPORTED;
    }
    if (type == &PyDict_Type) {
        return write_dict(b, v, depth);
    }
    if (type == &PyList_Type) {
        return write_sequence(b, v, depth);
    }
    if (v == Py_None) {
        return put(b, "null", 4);
    }
    if (v == Py_True) {
        return put(b, "true", 4);
    }
    if (v == Py_False) {
        return put(b, "false", 5);
    }
    return UNSUPPORTED; /* a float, a tuple, a subclass, anything else */
}

/* ---- column values --------------------------------------------------------------------- */

static PyObject *UUID_TYPE;  /* uuid.UUID */
static PyObject *STR_INT;    /* "int" */
static PyObject *STR_UTCOFFSET;
static PyObject *SIXTY_FOUR; /* 64 */

static inline char *
digits(char *out, int value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10);
        value /= 10;
    }
    return out + width;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" of an aware datetime at offset zero. */
static int
write_timestamp(Buf *b, PyObject *v)
{
    if (!PyDateTime_CheckExact(v)) {
        return UNSUPPORTED;
    }
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
    if (tz == Py_None) {
        return UNSUPPORTED; /* naive: the Python path says why it is refused */
    }
    if (tz != PyDateTime_TimeZone_UTC) {
        PyObject *offset = PyObject_CallMethodNoArgs(v, STR_UTCOFFSET);
        if (offset == NULL) {
            return called_failed();
        }
        int zero = PyDelta_CheckExact(offset) && PyDateTime_DELTA_GET_DAYS(offset) == 0 &&
                   PyDateTime_DELTA_GET_SECONDS(offset) == 0 &&
                   PyDateTime_DELTA_GET_MICROSECONDS(offset) == 0;
        Py_DECREF(offset);
        if (!zero) {
            return UNSUPPORTED; /* converted to UTC by the Python path */
        }
    }
    if (reserve(b, 29) < 0) {
        return FAILED;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    out = digits(out, PyDateTime_GET_YEAR(v), 4);
    *out++ = '-';
    out = digits(out, PyDateTime_GET_MONTH(v), 2);
    *out++ = '-';
    out = digits(out, PyDateTime_GET_DAY(v), 2);
    *out++ = 'T';
    out = digits(out, PyDateTime_DATE_GET_HOUR(v), 2);
    *out++ = ':';
    out = digits(out, PyDateTime_DATE_GET_MINUTE(v), 2);
    *out++ = ':';
    out = digits(out, PyDateTime_DATE_GET_SECOND(v), 2);
    *out++ = '.';
    out = digits(out, PyDateTime_DATE_GET_MICROSECOND(v), 6);
    *out++ = 'Z';
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

/* Lowercase, hyphenated: str() of an exact uuid.UUID. */
static int
write_uuid(Buf *b, PyObject *v)
{
    if ((PyObject *)Py_TYPE(v) != UUID_TYPE) {
        return UNSUPPORTED;
    }
    PyObject *number = PyObject_GetAttr(v, STR_INT);
    if (number == NULL) {
        return called_failed();
    }
    if (!PyLong_CheckExact(number)) {
        Py_DECREF(number);
        return UNSUPPORTED;
    }
    unsigned long long low = PyLong_AsUnsignedLongLongMask(number);
    PyObject *upper = PyNumber_Rshift(number, SIXTY_FOUR);
    Py_DECREF(number);
    if (upper == NULL) {
        return called_failed();
    }
    unsigned long long high = PyLong_AsUnsignedLongLong(upper); /* < 0 or >= 2**64: error */
    Py_DECREF(upper);
    if (high == (unsigned long long)-1 && PyErr_Occurred()) {
        return called_failed();
    }
    if (reserve(b, 38) < 0) {
        return FAILED;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    for (int i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20) {
            *out++ = '-';
        }
        unsigned long long word = i < 16 ? high : low;
        *out++ = HEX[(word >> (60 - 4 * (i % 16))) & 15];
    }
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

static const char BASE64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding (base64.b64encode) of exact bytes. */
static int
write_bytes(Buf *b, PyObject *v)
{
    if (!PyBytes_CheckExact(v)) {
        return UNSUPPORTED;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(v);
    Py_ssize_t n = PyBytes_GET_SIZE(v);
    if (n / 3 >= (PY_SSIZE_T_MAX - 8) / 4) {
        PyErr_NoMemory();
        return FAILED;
    }
    if (reserve(b, (n + 2) / 3 * 4 + 2) < 0) {
        return FAILED;
    }
    char *out = b->data + b->len;
    *out++ = '"';
    Py_ssize_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned int w = (unsigned int)p[i] << 16 | (unsigned int)p[i + 1] << 8 | p[i + 2];
        *out++ = BASE64[w >> 18];
        *out++ = BASE64[(w >> 12) & 63];
        *out++ = BASE64[(w >> 6) & 63];
        *out++ = BASE64[w & 63];
    }
    if (n - i == 1) {
        unsigned int w = (unsigned int)p[i] << 16;
        *out++ = BASE64[w >> 18];
        *out++ = BASE64[(w >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    }
    else if (n - i == 2) {
        unsigned int w = (unsigned int)p[i] << 16 | (unsigned int)p[i + 1] << 8;
        *out++ = BASE64[w >> 18];
        *out++ = BASE64[(w >> 12) & 63];
        *out++ = BASE64[(w >> 6) & 63];
        *out++ = '=';
    }
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

/* ---- the Plan: one source's leaf ------------------------------------------------------- */

typedef struct {
    PyObject *name;    /* the column's name (exact, ASCII str) */
    char *member;      /* '"name":' */
    Py_ssize_t member_len;
    Py_ssize_t input;  /* position in the values given, -1 for "source" */
    int kind;
} Field;

typedef struct {
    PyObject_HEAD
    Py_ssize_t inputs; /* how many values a call gives (skipped positions included) */
    Py_ssize_t nfields;
    Field *fields;     /* in canonical order, "source" among them */
    char *source;      /* the source's JSON string */
    Py_ssize_t source_len;
    PyObject *loads;   /* JSON text -> value, for K_JSON */
    PyObject *parsed;  /* leaves.Parsed: (text, value) */
} Plan;

static void
plan_clear_fields(Plan *self)
{
    if (self->fields != NULL) {
        for (Py_ssize_t i = 0; i < self->nfields; i++) {
            Py_XDECREF(self->fields[i].name);
            PyMem_Free(self->fields[i].member);
        }
        PyMem_Free(self->fields);
        self->fields = NULL;
    }
    PyMem_Free(self->source);
    self->source = NULL;
}

static int
plan_traverse(Plan *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loads);
    Py_VISIT(self->parsed);
    return 0;
}

static int
plan_clear(Plan *self)
{
    Py_CLEAR(self->loads);
    Py_CLEAR(self->parsed);
    return 0;
}

static void
plan_dealloc(Plan *self)
{
    PyObject_GC_UnTrack(self);
    plan_clear(self);
    plan_clear_fields(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* '"text"' for an ASCII name without characters to escape, else NULL with ValueError. */
static char *
plain_json_string(PyObject *name, const char *suffix, Py_ssize_t *len)
{
    if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name)) {
        PyErr_SetString(PyExc_ValueError, "names must be ASCII str");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    const unsigned char *p = PyUnicode_1BYTE_DATA(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ESCAPE[p[i]]) {
            PyErr_SetString(PyExc_ValueError, "names must need no escapes");
            return NULL;
        }
    }
    size_t extra = strlen(suffix);
    char *out = PyMem_Malloc((size_t)n + 2 + extra + 1);
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    out[0] = '"';
    memcpy(out + 1, p, (size_t)n);
    out[n + 1] = '"';
    memcpy(out + n + 2, suffix, extra + 1);
    *len = n + 2 + (Py_ssize_t)extra;
    return out;
}

static int
field_cmp(const void *a, const void *b)
{
    return key_cmp(((const Field *)a)->name, ((const Field *)b)->name);
}

/* Plan(source, names, kinds, loads, parsed): names and kinds per input position (a name of
 * None: a position the leaf skips); kinds as in KIND_NAMES. */
static int
plan_init(Plan *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"source", "names", "kinds", "loads", "parsed", NULL};
    PyObject *source, *names, *kinds, *loads, *parsed;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UOOOO:Plan", keywords, &source, &names,
                                     &kinds, &loads, &parsed)) {
        return -1;
    }
    if (self->fields != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Plan is set up once");
        return -1;
    }
    if (!PyCallable_Check(loads) || !PyType_Check(parsed)) {
        PyErr_SetString(PyExc_TypeError, "loads must be callable and parsed a type");
        return -1;
    }
    PyObject *name_list = PySequence_Tuple(names);
    if (name_list == NULL) {
        return -1;
    }
    PyObject *kind_list = PySequence_Tuple(kinds);
    if (kind_list == NULL) {
        Py_DECREF(name_list);
        return -1;
    }
    Py_ssize_t inputs = PyTuple_GET_SIZE(name_list);
    if (PyTuple_GET_SIZE(kind_list) != inputs) {
        PyErr_SetString(PyExc_ValueError, "one kind per name");
        goto fail;
    }
    self->fields = PyMem_Calloc((size_t)inputs + 1, sizeof(Field));
    if (self->fields == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    self->inputs = inputs;
    self->nfields = 0;
    for (Py_ssize_t i = 0; i < inputs; i++) {
        PyObject *name = PyTuple_GET_ITEM(name_list, i);
        if (name == Py_None) {
            continue;
        }
        PyObject *kind_name = PyTuple_GET_ITEM(kind_list, i);
        int kind = -1;
        for (int k = 0; KIND_NAMES[k] != NULL; k++) {
            if (PyUnicode_Check(kind_name) &&
                PyUnicode_CompareWithASCIIString(kind_name, KIND_NAMES[k]) == 0) {
                kind = k;
            }
        }
        if (kind < 0) {
            PyErr_Format(PyExc_ValueError, "unknown kind %R", kind_name);
            goto fail;
        }
        Field *f = &self->fields[self->nfields];
        f->member = plain_json_string(name, ":", &f->member_len);
        if (f->member == NULL) {
            goto fail;
        }
        Py_INCREF(name);
        f->name = name;
        f->input = i;
        f->kind = kind;
        self->nfields++;
        if (PyUnicode_CompareWithASCIIString(name, "source") == 0) {
            PyErr_SetString(PyExc_ValueError, "\"source\" is the leaf's own member");
            goto fail;
        }
    }
    Field *f = &self->fields[self->nfields];
    f->name = PyUnicode_FromString("source");
    if (f->name == NULL) {
        goto fail;
    }
    f->input = -1;
    f->kind = K_SOURCE;
    self->nfields++;
    f->member = plain_json_string(f->name, ":", &f->member_len);
    if (f->member == NULL) {
        goto fail;
    }
    self->source = plain_json_string(source, "", &self->source_len);
    if (self->source == NULL) {
        goto fail;
    }
    qsort(self->fields, (size_t)self->nfields, sizeof(Field), field_cmp);
    for (Py_ssize_t i = 1; i < self->nfields; i++) {
        if (key_cmp(self->fields[i - 1].name, self->fields[i].name) == 0) {
            PyErr_Format(PyExc_ValueError, "%R given twice", self->fields[i].name);
            goto fail;
        }
    }
    Py_INCREF(loads);
    Py_XSETREF(self->loads, loads);
    Py_INCREF(parsed);
    Py_XSETREF(self->parsed, parsed);
    Py_DECREF(name_list);
    Py_DECREF(kind_list);
    return 0;
fail:
    plan_clear_fields(self);
    self->nfields = 0;
    Py_DECREF(name_list);
    Py_DECREF(kind_list);
    return -1;
}

static int
write_json_text(Plan *self, Buf *b, PyObject *v)
{
    if (Py_TYPE(v) == (PyTypeObject *)self->parsed) {
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 2) {
            return UNSUPPORTED;
        }
        return write_value(b, PyTuple_GET_ITEM(v, 1), 0);
    }
    if (!PyUnicode_CheckExact(v) && !PyBytes_CheckExact(v)) {
        return UNSUPPORTED;
    }
    PyObject *value = PyObject_CallOneArg(self->loads, v);
    if (value == NULL) {
        return called_failed(); /* e.g. 1e400, which the Python path reads exactly */
    }
    int r = write_value(b, value, 0);
    Py_DECREF(value);
    return r;
}

static int
write_field(Plan *self, Buf *b, const Field *f, PyObject *v)
{
    switch (f->kind) {
    case K_TEXT:
        return PyUnicode_CheckExact(v) ? write_str(b, v) : UNSUPPORTED;
    case K_INTEGER:
        return PyLong_CheckExact(v) ? write_int(b, v) : UNSUPPORTED;
    case K_TIMESTAMP:
        return write_timestamp(b, v);
    case K_UUID:
        return write_uuid(b, v);
    case K_BYTES:
        return write_bytes(b, v);
    case K_ARRAY:
        if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
            return write_sequence(b, v, 0);
        }
        return UNSUPPORTED;
    case K_INET:
        /* PostgreSQL's inet::text, with its prefix length; other forms: the Python path. */
        if (PyUnicode_CheckExact(v) &&
            PyUnicode_FindChar(v, '/', 0, PyUnicode_GET_LENGTH(v), 1) >= 0) {
            return write_str(b, v);
        }
        return UNSUPPORTED;
    case K_JSON:
        return write_json_text(self, b, v);
    case K_VALUE:
        return write_value(b, v, 0);
    default:
        return put(b, self->source, self->source_len);
    }
}

/* The leaf of the values items[0..n) followed by more[0..m). */
static PyObject *
plan_write(Plan *self, PyObject *const *items, Py_ssize_t n, PyObject *const *more,
           Py_ssize_t m, int prefixed)
{
    if (self->fields == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Plan not set up");
        return NULL;
    }
    if (n + m != self->inputs) {
        PyErr_Format(PyExc_ValueError, "%zd values given for %zd names", n + m, self->inputs);
        return NULL;
    }
    char stack[STACK_BYTES];
    Buf b = {stack, 0, STACK_BYTES, 0};
    int r = DONE;
    if (prefixed) {
        b.data[b.len++] = '\0'; /* RFC 6962's leaf prefix */
    }
    b.data[b.len++] = '{';
    int first = 1;
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        const Field *f = &self->fields[i];
        PyObject *v = NULL;
        if (f->input >= 0) {
            v = f->input < n ? items[f->input] : more[f->input - n];
            if (v == Py_None && f->kind != K_VALUE) {
                continue; /* NULL columns are left out of the leaf */
            }
        }
        if (!first && (r = put_char(&b, ',')) < 0) {
            goto done;
        }
        first = 0;
        if ((r = put(&b, f->member, f->member_len)) < 0) {
            goto done;
        }
        if ((r = write_field(self, &b, f, v)) != DONE) {
            goto done;
        }
    }
    r = put_char(&b, '}');
done:;
    return finish(&b, r);
}

static PyObject *
plan_call(Plan *self, PyObject *const *args, Py_ssize_t nargs, int prefixed)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "encode(values, *more) takes the values");
        return NULL;
    }
    PyObject *values = args[0];
    if (PyTuple_Check(values)) {
        return plan_write(self, &PyTuple_GET_ITEM(values, 0), PyTuple_GET_SIZE(values),
                          args + 1, nargs - 1, prefixed);
    }
    if (PyList_Check(values)) {
        /* A copy: the list may not change while it is read. */
        PyObject *copy = PyList_AsTuple(values);
        if (copy == NULL) {
            return NULL;
        }
        PyObject *result = plan_write(self, &PyTuple_GET_ITEM(copy, 0),
                                      PyTuple_GET_SIZE(copy), args + 1, nargs - 1, prefixed);
        Py_DECREF(copy);
        return result;
    }
    PyErr_SetString(PyExc_TypeError, "values must be a tuple or a list");
    return NULL;
}

static PyObject *
plan_encode(Plan *self, PyObject *const *args, Py_ssize_t nargs)
{
    return plan_call(self, args, nargs, 0);
}

static PyObject *
plan_encode_prefixed(Plan *self, PyObject *const *args, Py_ssize_t nargs)
{
    return plan_call(self, args, nargs, 1);
}

/* The leaf of {name: value} (a missing name counts as NULL). */
static PyObject *
plan_encode_mapping(Plan *self, PyObject *mapping)
{
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "encode_mapping takes a dict");
        return NULL;
    }
    if (self->fields == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Plan not set up");
        return NULL;
    }
    PyObject *values = PyTuple_New(self->inputs);
    if (values == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->inputs; i++) {
        Py_INCREF(Py_None);
        PyTuple_SET_ITEM(values, i, Py_None);
    }
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        const Field *f = &self->fields[i];
        if (f->input < 0) {
            continue;
        }
        PyObject *v = PyDict_GetItemWithError(mapping, f->name);
        if (v == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(values);
                return NULL;
            }
            continue;
        }
        Py_INCREF(v);
        Py_SETREF(PyTuple_GET_ITEM(values, f->input), v);
    }
    PyObject *result = plan_write(self, &PyTuple_GET_ITEM(values, 0), self->inputs, NULL, 0, 0);
    Py_DECREF(values);
    return result;
}

static PyMethodDef plan_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))plan_encode, METH_FASTCALL,
     "encode(values, *more) -> bytes | None: the leaf of the values (a tuple or list, then "
     "any further values), given in the order of the names; None where only the Python "
     "path is exact."},
    {"encode_prefixed", (PyCFunction)(void (*)(void))plan_encode_prefixed, METH_FASTCALL,
     "As encode, with RFC 6962's 0x00 leaf prefix before the leaf bytes (what SHA-256 "
     "hashes into the leaf hash)."},
    {"encode_mapping", (PyCFunction)plan_encode_mapping, METH_O,
     "encode_mapping(row: dict) -> bytes | None: as encode, the values by name."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "auditor.evidence._leafc.Plan",
    .tp_doc = "Plan(source, names, kinds, loads, parsed): the leaf encoding of one source.",
    .tp_basicsize = sizeof(Plan),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)plan_init,
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_traverse = (traverseproc)plan_traverse,
    .tp_clear = (inquiry)plan_clear,
    .tp_methods = plan_methods,
};

/* ---- export: evidence pack lines (auditor/evidence/pack.py, pack_csv.py) ---------------
 *
 * leaf_lines: the leaf of each event row from its leaf_sql pieces (run, jsonb text, run),
 * the jsonb text put in canonical form here instead of orjson's loads + sorted dumps
 * (auditor.store.leaf_sql.unchecked_json): the same bytes wherever this answers, None for a
 * row it leaves to Python (a number that is not an integer within +-(10^15 - 1), "-0", a
 * key with an escape or a character beyond U+FFFF, a duplicate key, invalid JSON or
 * UTF-8, nesting deeper than MAX_DEPTH). Within those, orjson's sorted output is RFC 8785.
 *
 * csv_rows: a chunk's events.csv lines from the same pieces (pack_csv.py), or None for a
 * chunk whose pieces are not exactly what the query writes (Python then writes it).
 *
 * Only exact bytes / int / tuple / list objects are read, so no Python code runs while a
 * row's borrowed items are in use. */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Src;

static inline void
skip_ws(Src *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        s->p++;
    }
}

static inline int
hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return UNSUPPORTED;
        v = v << 4 | d;
    }
    *out = v;
    return DONE;
}

/* The length of the valid UTF-8 sequence at p (lead byte >= 0x80), 0 if invalid
 * (overlong, surrogate, beyond U+10FFFF, truncated). */
static inline int
utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    if (c >= 0xc2 && c <= 0xdf) {
        return end - p >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (end - p < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && p[1] < 0xa0) return 0;  /* overlong */
        if (c == 0xed && p[1] >= 0xa0) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (end - p < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80) return 0;
        if (c == 0xf0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xf4 && p[1] >= 0x90) return 0; /* beyond U+10FFFF */
        return 4;
    }
    return 0;
}

static inline int
put_utf8(Buf *b, unsigned c)
{
    char tmp[4];
    Py_ssize_t n;
    if (c < 0x80) { tmp[0] = (char)c; n = 1; }
    else if (c < 0x800) { tmp[0] = (char)(0xc0 | (c >> 6)); tmp[1] = (char)(0x80 | (c & 0x3f)); n = 2; }
    else if (c < 0x10000) {
        tmp[0] = (char)(0xe0 | (c >> 12)); tmp[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        tmp[2] = (char)(0x80 | (c & 0x3f)); n = 3;
    }
    else {
        tmp[0] = (char)(0xf0 | (c >> 18)); tmp[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        tmp[2] = (char)(0x80 | ((c >> 6) & 0x3f)); tmp[3] = (char)(0x80 | (c & 0x3f)); n = 4;
    }
    return put(b, tmp, n);
}

/* A JSON string at s->p (the opening quote) decoded into b: its UTF-8 bytes, no quotes.
 * *astral: set when it holds a character beyond U+FFFF; *escaped: when it held an escape. */
static int
decode_string(Src *s, Buf *b, int *astral, int *escaped)
{
    const unsigned char *p = s->p + 1, *end = s->end;
    for (;;) {
        const unsigned char *run = p;
        /* eight bytes at a time through plain ASCII (no control, quote, backslash, high bit) */
        while (end - p >= 8 && !needs_escape8(p)) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & 0x8080808080808080ULL) break;
            p += 8;
        }
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        if (p > run && put(b, (const char *)run, p - run) < 0) return FAILED;
        if (p >= end) return UNSUPPORTED;
        unsigned c = *p;
        if (c == '"') {
            s->p = p + 1;
            return DONE;
        }
        if (c < 0x20) return UNSUPPORTED; /* a raw control: not JSON */
        if (c >= 0x80) {
            int n = utf8_len(p, end);
            if (n == 0) return UNSUPPORTED;
            if (n == 4) *astral = 1;
            if (put(b, (const char *)p, n) < 0) return FAILED;
            p += n;
            continue;
        }
        /* a backslash */
        *escaped = 1;
        if (end - p < 2) return UNSUPPORTED;
        char e = (char)p[1];
        p += 2;
        switch (e) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            if (end - p < 4 || hex4(p, &c) != DONE) return UNSUPPORTED;
            p += 4;
            if (c >= 0xdc00 && c <= 0xdfff) return UNSUPPORTED; /* a lone low surrogate */
            if (c >= 0xd800 && c <= 0xdbff) {
                unsigned low;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &low) != DONE ||
                    low < 0xdc00 || low > 0xdfff) return UNSUPPORTED;
                p += 6;
                c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
                *astral = 1;
            }
            break;
        }
        default:
            return UNSUPPORTED;
        }
        if (put_utf8(b, c) < 0) return FAILED;
    }
}

/* Decoded string bytes as a canonical JSON string (quotes included). */
static int
put_json_string(Buf *b, const char *text, Py_ssize_t n)
{
    if (reserve(b, 6 * n + 2) < 0) return FAILED;
    char *out = b->data + b->len;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80 && ESCAPE[c]) out = put_escape(out, c);
        else *out++ = (char)c;
    }
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

typedef struct {
    Py_ssize_t start;   /* of the member ("key":value) in the output */
    Py_ssize_t end;
    Py_ssize_t key;     /* of the key's bytes (after the quote) in the output */
    Py_ssize_t key_len;
} Member;

static int
key_less(const char *base, const Member *a, const Member *b)
{
    Py_ssize_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(base + a->key, base + b->key, (size_t)n);
    return c < 0 || (c == 0 && a->key_len < b->key_len);
}

/* A stable merge sort of members by key bytes (UTF-8 order is code point order, and for
 * keys within the BMP UTF-16 order); tmp has room for n. */
static void
sort_members(const char *base, Member *m, Member *tmp, Py_ssize_t n)
{
    if (n < 2) return;
    if (n <= 8) {
        for (Py_ssize_t i = 1; i < n; i++) {
            Member x = m[i];
            Py_ssize_t j = i;
            while (j > 0 && key_less(base, &x, &m[j - 1])) { m[j] = m[j - 1]; j--; }
            m[j] = x;
        }
        return;
    }
    Py_ssize_t half = n / 2;
    sort_members(base, m, tmp, half);
    sort_members(base, m + half, tmp, n - half);
    Py_ssize_t i = 0, j = half, k = 0;
    while (i < half && j < n) tmp[k++] = key_less(base, &m[j], &m[i]) ? m[j++] : m[i++];
    while (i < half) tmp[k++] = m[i++];
    while (j < n) tmp[k++] = m[j++];
    memcpy(m, tmp, (size_t)n * sizeof(Member));
}

static int canon_value(Src *s, Buf *b, int depth);

/* A JSON string with escapes: decoded into the output's spare room, then escaped in place
 * of it. Not inlined: its buffer stays out of the recursing frames. */
static int __attribute__((noinline))
canon_string_escaped(Src *s, Buf *b)
{
    Py_ssize_t at = b->len;
    int astral = 0, escaped = 0;
    int r = decode_string(s, b, &astral, &escaped);
    if (r != DONE) return r;
    Py_ssize_t n = b->len - at;
    char stack[STACK_BYTES];
    char *text = n <= STACK_BYTES ? stack : PyMem_Malloc((size_t)n);
    if (text == NULL) { PyErr_NoMemory(); return FAILED; }
    memcpy(text, b->data + at, (size_t)n);
    b->len = at;
    r = put_json_string(b, text, n);
    if (text != stack) PyMem_Free(text);
    return r;
}

static int
canon_object(Src *s, Buf *b, int depth)
{
    s->p++; /* '{' */
    Py_ssize_t start = b->len;
    Member small[SMALL_DICT * 2];
    Member *m = small;
    Py_ssize_t n = 0, cap = SMALL_DICT;
    int r = DONE;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return put(b, "{}", 2);
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') { r = UNSUPPORTED; break; }
        if (n == cap) {
            Py_ssize_t bigger = cap * 2;
            Member *grown = m == small ? PyMem_Malloc((size_t)bigger * 2 * sizeof(Member))
                                       : PyMem_Realloc(m, (size_t)bigger * 2 * sizeof(Member));
            if (grown == NULL) { PyErr_NoMemory(); r = FAILED; break; }
            if (m == small) memcpy(grown, small, (size_t)n * sizeof(Member));
            m = grown;
            cap = bigger;
        }
        Member *it = &m[n];
        it->start = b->len;
        if ((r = put_char(b, '"')) < 0) break;
        it->key = b->len;
        int astral = 0, escaped = 0;
        if ((r = decode_string(s, b, &astral, &escaped)) != DONE) break;
        /* an escaped key would need its decoded bytes apart from its written form */
        if (astral || escaped) { r = UNSUPPORTED; break; }
        it->key_len = b->len - it->key;
        if ((r = put(b, "\":", 2)) < 0) break;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') { r = UNSUPPORTED; break; }
        s->p++;
        skip_ws(s);
        if ((r = canon_value(s, b, depth + 1)) != DONE) break;
        it->end = b->len;
        n++;
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') { s->p++; continue; }
        if (s->p < s->end && *s->p == '}') { s->p++; break; }
        r = UNSUPPORTED;
        break;
    }
    if (r == DONE) {
        sort_members(b->data, m, m + cap, n);
        for (Py_ssize_t i = 1; i < n; i++) {
            if (!key_less(b->data, &m[i - 1], &m[i])) { r = UNSUPPORTED; break; } /* dup */
        }
    }
    if (r == DONE) {
        /* the members were written in input order at start.. with no commas between them;
         * rewritten sorted: a brace, n members, n - 1 commas, a brace */
        Py_ssize_t size = b->len - start;
        char small_copy[1024]; /* small: this frame recurs up to MAX_DEPTH times */
        char *copy = NULL;
        if (reserve(b, n + 1) < 0 ||
            (copy = size < (Py_ssize_t)sizeof small_copy ? small_copy : PyMem_Malloc((size_t)size + 1)) == NULL) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            r = FAILED;
        }
        else {
            memcpy(copy, b->data + start, (size_t)size);
            char *out = b->data + start;
            *out++ = '{';
            for (Py_ssize_t i = 0; i < n; i++) {
                if (i) *out++ = ',';
                Py_ssize_t len = m[i].end - m[i].start;
                memcpy(out, copy + (m[i].start - start), (size_t)len);
                out += len;
            }
            *out++ = '}';
            if (copy != small_copy) PyMem_Free(copy);
            b->len = out - b->data;
        }
    }
    if (m != small) PyMem_Free(m);
    return r;
}

static int
canon_value(Src *s, Buf *b, int depth)
{
    if (depth > MAX_DEPTH) return UNSUPPORTED;
    skip_ws(s);
    if (s->p >= s->end) return UNSUPPORTED;
    unsigned char c = *s->p;
    if (c == '{') return canon_object(s, b, depth);
    if (c == '[') {
        s->p++;
        if (put_char(b, '[') < 0) return FAILED;
        skip_ws(s);
        if (s->p < s->end && *s->p == ']') { s->p++; return put_char(b, ']'); }
        for (int first = 1;; first = 0) {
            if (!first && put_char(b, ',') < 0) return FAILED;
            int r = canon_value(s, b, depth + 1);
            if (r != DONE) return r;
            skip_ws(s);
            if (s->p < s->end && *s->p == ',') { s->p++; continue; }
            if (s->p < s->end && *s->p == ']') { s->p++; return put_char(b, ']'); }
            return UNSUPPORTED;
        }
    }
    if (c == '"') {
        /* jsonb writes strings as RFC 8785 does (the same escapes, UTF-8 otherwise): one
         * without a backslash is copied as it is, once its bytes are checked */
        const unsigned char *q = s->p + 1;
        while (s->end - q >= 8 && !needs_escape8(q)) {
            uint64_t w;
            memcpy(&w, q, 8);
            if (w & 0x8080808080808080ULL) break;
            q += 8;
        }
        while (q < s->end && *q != '"' && *q != '\\' && *q >= 0x20) {
            if (*q < 0x80) {
                q++;
                continue;
            }
            int n = utf8_len(q, s->end);
            if (n == 0) return UNSUPPORTED;
            q += n;
        }
        if (q < s->end && *q == '"') {
            int r = put(b, (const char *)s->p, q + 1 - s->p);
            s->p = q + 1;
            return r;
        }
        return canon_string_escaped(s, b);
    }
    if (c == 't' && s->end - s->p >= 4 && memcmp(s->p, "true", 4) == 0) {
        s->p += 4;
        return put(b, "true", 4);
    }
    if (c == 'f' && s->end - s->p >= 5 && memcmp(s->p, "false", 5) == 0) {
        s->p += 5;
        return put(b, "false", 5);
    }
    if (c == 'n' && s->end - s->p >= 4 && memcmp(s->p, "null", 4) == 0) {
        s->p += 4;
        return put(b, "null", 4);
    }
    /* integers of at most 15 digits only: exact as doubles, where RFC 8785 and orjson agree */
    const unsigned char *p = s->p;
    if (p < s->end && *p == '-') p++;
    const unsigned char *digits = p;
    while (p < s->end && *p >= '0' && *p <= '9') p++;
    Py_ssize_t n = p - digits;
    if (n == 0 || n > 15 || (digits[0] == '0' && (n > 1 || digits != s->p))) {
        return UNSUPPORTED; /* none, too long, a leading zero, or "-0" */
    }
    if (p < s->end && (*p == '.' || *p == 'e' || *p == 'E')) return UNSUPPORTED;
    int r = put(b, (const char *)s->p, p - s->p);
    s->p = p;
    return r;
}

/* The canonical form of a whole JSON text. */
static int
canon_text(Buf *b, const char *text, Py_ssize_t n)
{
    Src s = {(const unsigned char *)text, (const unsigned char *)text + n};
    int r = canon_value(&s, b, 0);
    if (r != DONE) return r;
    skip_ws(&s);
    return s.p == s.end ? DONE : UNSUPPORTED;
}

static PyObject *
module_canonical_json(PyObject *module, PyObject *text)
{
    if (!PyBytes_CheckExact(text)) {
        PyErr_SetString(PyExc_TypeError, "canonical_json() takes bytes");
        return NULL;
    }
    char stack[STACK_BYTES];
    Buf b = {stack, 0, STACK_BYTES, 0};
    int r = canon_text(&b, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text));
    return finish(&b, r);
}

/* One row's leaf (0x00 prefix) from run, jsonb text, run: as LeafQuery._join_one. */
static int
leaf_of(Buf *b, PyObject *head, PyObject *value, PyObject *tail, PyObject *key)
{
    if (!PyBytes_CheckExact(head) || !PyBytes_CheckExact(value) || !PyBytes_CheckExact(tail) ||
        PyBytes_GET_SIZE(head) == 0 || PyBytes_GET_SIZE(tail) == 0) {
        return UNSUPPORTED; /* _join_one hands these to _join_any */
    }
    if (put(b, "\0{", 2) < 0 || put(b, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head)) < 0 ||
        put_char(b, ',') < 0 || put(b, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)) < 0) {
        return FAILED;
    }
    int r = canon_text(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    if (r != DONE) return r;
    if (put_char(b, ',') < 0 || put(b, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail)) < 0 ||
        put_char(b, '}') < 0) {
        return FAILED;
    }
    return DONE;
}

/* Item i of an exact list or tuple (borrowed), NULL if out of range. */
static inline PyObject *
item_of(PyObject *seq, Py_ssize_t i)
{
    if (PyTuple_CheckExact(seq)) {
        return i >= 0 && i < PyTuple_GET_SIZE(seq) ? PyTuple_GET_ITEM(seq, i) : NULL;
    }
    if (PyList_CheckExact(seq)) {
        return i >= 0 && i < PyList_GET_SIZE(seq) ? PyList_GET_ITEM(seq, i) : NULL;
    }
    return NULL;
}

static PyObject *
module_leaf_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyLong_CheckExact(args[1]) ||
        !PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "leaf_lines(rows: list, at: int, key: bytes)");
        return NULL;
    }
    PyObject *rows = args[0], *key = args[2];
    Py_ssize_t at = PyLong_AsSsize_t(args[1]);
    if (at < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "at must be >= 0");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(rows);
    PyObject *out = PyList_New(count);
    if (out == NULL) return NULL;
    char stack[STACK_BYTES];
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        PyObject *head = item_of(row, at), *value = item_of(row, at + 1);
        PyObject *tail = item_of(row, at + 2);
        PyObject *leaf;
        if (head == NULL || value == NULL || tail == NULL) {
            leaf = Py_NewRef(Py_None);
        }
        else {
            Buf b = {stack, 0, STACK_BYTES, 0};
            leaf = finish(&b, leaf_of(&b, head, value, tail, key));
            if (leaf == NULL) {
                Py_DECREF(out);
                return NULL;
            }
        }
        PyList_SET_ITEM(out, i, leaf);
    }
    return out;
}

/* A CSV field as COPY (FORMAT csv) writes a non-NULL value: quoted when empty or holding
 * ',', '"', '\n' or '\r', inner quotes doubled. */
static int
put_csv_field(Buf *b, const char *text, Py_ssize_t n)
{
    int quote = n == 0 || memchr(text, '"', (size_t)n) != NULL ||
                memchr(text, ',', (size_t)n) != NULL || memchr(text, '\n', (size_t)n) != NULL ||
                memchr(text, '\r', (size_t)n) != NULL;
    if (!quote) return put(b, text, n);
    if (reserve(b, 2 * n + 2) < 0) return FAILED;
    char *out = b->data + b->len;
    *out++ = '"';
    const char *p = text, *end = text + n;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        const char *stop = q == NULL ? end : q + 1;
        memcpy(out, p, (size_t)(stop - p));
        out += stop - p;
        if (q != NULL) *out++ = '"'; /* the inner quote doubled */
        p = stop;
    }
    *out++ = '"';
    b->len = out - b->data;
    return DONE;
}

static inline int
is_digits(const unsigned char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
    }
    return 1;
}

/* A run's member value (at s->p, after the name) as one CSV field of the given kind. */
static int
csv_value(Src *s, Buf *b, Buf *scratch, const char *kind)
{
    if (strcmp(kind, "integer") == 0) {
        const unsigned char *p = s->p;
        if (p < s->end && *p == '-') p++;
        const unsigned char *digits = p;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
        Py_ssize_t n = p - digits;
        if (n == 0 || n > 19 || (digits[0] == '0' && n > 1) ||
            (digits[0] == '0' && digits != s->p)) {
            return UNSUPPORTED;
        }
        int r = put(b, (const char *)s->p, p - s->p);
        s->p = p;
        return r;
    }
    int text = strcmp(kind, "text") == 0, uuid = strcmp(kind, "uuid") == 0;
    int timestamp = strcmp(kind, "timestamp") == 0;
    if (!(text || uuid || timestamp) || s->p >= s->end || *s->p != '"') return UNSUPPORTED;
    scratch->len = 0;
    int astral = 0, escaped = 0;
    int r = decode_string(s, scratch, &astral, &escaped);
    if (r != DONE) return r;
    const unsigned char *t = (const unsigned char *)scratch->data;
    if (timestamp) {
        /* to_char's YYYY-MM-DDTHH:MI:SS.USZ -> timestamptz_out at UTC (ISO) */
        if (scratch->len != 27 || !is_digits(t, 4) || t[4] != '-' || !is_digits(t + 5, 2) ||
            t[7] != '-' || !is_digits(t + 8, 2) || t[10] != 'T' || !is_digits(t + 11, 2) ||
            t[13] != ':' || !is_digits(t + 14, 2) || t[16] != ':' || !is_digits(t + 17, 2) ||
            t[19] != '.' || !is_digits(t + 20, 6) || t[26] != 'Z') {
            return UNSUPPORTED;
        }
        char out[32];
        memcpy(out, t, 10);
        out[10] = ' ';
        memcpy(out + 11, t + 11, 8);
        Py_ssize_t n = 19, digits = 6;
        while (digits > 0 && t[20 + digits - 1] == '0') digits--;
        if (digits) {
            out[n++] = '.';
            memcpy(out + n, t + 20, (size_t)digits);
            n += digits;
        }
        memcpy(out + n, "+00", 3);
        return put(b, out, n + 3);
    }
    return put_csv_field(b, scratch->data, scratch->len);
}

/* Whether the run's next member is "name": (after a comma unless first); if so s->p moves
 * past it. */
static int
at_member(Src *s, int first, const char *name, Py_ssize_t n)
{
    const unsigned char *p = s->p;
    if (!first) {
        if (p >= s->end || *p != ',') return 0;
        p++;
    }
    if (s->end - p >= n + 3 && p[0] == '"' && memcmp(p + 1, name, (size_t)n) == 0 &&
        p[n + 1] == '"' && p[n + 2] == ':') {
        s->p = p + n + 3;
        return 1;
    }
    return 0;
}

/* Passes over the constant "source" member (not a column) if it is next. */
static int
skip_source(Src *s, int *first, Buf *scratch)
{
    if (!at_member(s, *first, "source", 6)) return DONE;
    *first = 0;
    if (s->p >= s->end || *s->p != '"') return UNSUPPORTED;
    scratch->len = 0;
    int astral = 0, escaped = 0;
    return decode_string(s, scratch, &astral, &escaped);
}

static inline int
set_run(Src *s, PyObject *run)
{
    if (run == NULL || !PyBytes_CheckExact(run)) return UNSUPPORTED;
    s->p = (const unsigned char *)PyBytes_AS_STRING(run);
    s->end = s->p + PyBytes_GET_SIZE(run);
    return DONE;
}

/* One row's CSV line. names/kinds: the fields in order (exact tuples of bytes / str). */
static int
csv_row(Buf *b, Buf *scratch, PyObject *row, Py_ssize_t at, Py_ssize_t position,
        PyObject *names, PyObject *kinds)
{
    PyObject *pos = item_of(row, position);
    if (pos == NULL) return UNSUPPORTED;
    if (pos != Py_None) {
        if (!PyLong_CheckExact(pos)) return UNSUPPORTED;
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(pos, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return UNSUPPORTED;
        }
        char digits[32];
        int n = snprintf(digits, sizeof digits, "%lld", v);
        if (put(b, digits, n) < 0) return FAILED;
    }
    Py_ssize_t run_index = 0;
    Src s;
    int first = 1, r;
    if (set_run(&s, item_of(row, at + 1)) != DONE) return UNSUPPORTED;
    for (Py_ssize_t f = 0; f < PyTuple_GET_SIZE(names); f++) {
        PyObject *name = PyTuple_GET_ITEM(names, f);
        const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kinds, f));
        if (kind == NULL) return FAILED;
        if (put_char(b, ',') < 0) return FAILED;
        if ((r = skip_source(&s, &first, scratch)) != DONE) return r;
        if (strcmp(kind, "json") == 0) {
            /* the run before must be used up; the column's text, then the next run */
            if (s.p != s.end) return UNSUPPORTED;
            PyObject *value = item_of(row, at + 2 + 2 * run_index);
            if (value == NULL) return UNSUPPORTED;
            if (value != Py_None) {
                if (!PyBytes_CheckExact(value)) return UNSUPPORTED;
                if (put_csv_field(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)) < 0) {
                    return FAILED;
                }
            }
            run_index++;
            if (set_run(&s, item_of(row, at + 1 + 2 * run_index)) != DONE) return UNSUPPORTED;
            first = 1;
            continue;
        }
        if (at_member(&s, first, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))) {
            first = 0;
            if ((r = csv_value(&s, b, scratch, kind)) != DONE) return r;
        }
        /* else absent from the run: NULL, an empty field */
    }
    if ((r = skip_source(&s, &first, scratch)) != DONE) return r;
    if (s.p != s.end) return UNSUPPORTED; /* a member that is no field, or out of order */
    return put_char(b, '\n');
}

static PyObject *
module_csv_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_CheckExact(args[0]) || !PyLong_CheckExact(args[1]) ||
        !PyLong_CheckExact(args[2]) || !PyTuple_CheckExact(args[3]) ||
        !PyTuple_CheckExact(args[4]) || PyTuple_GET_SIZE(args[3]) != PyTuple_GET_SIZE(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "csv_rows(rows: list, at: int, position: int, names: tuple[bytes, ...],"
                        " kinds: tuple[str, ...]) (names and kinds of one length)");
        return NULL;
    }
    PyObject *rows = args[0], *names = args[3], *kinds = args[4];
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(names, i)) ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(kinds, i))) {
            PyErr_SetString(PyExc_TypeError, "names are bytes, kinds str");
            return NULL;
        }
    }
    Py_ssize_t at = PyLong_AsSsize_t(args[1]), position = PyLong_AsSsize_t(args[2]);
    if (at < 0 || position < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "at and position >= 0");
        return NULL;
    }
    char stack[STACK_BYTES], scratch_stack[STACK_BYTES];
    Buf b = {stack, 0, STACK_BYTES, 0};
    Buf scratch = {scratch_stack, 0, STACK_BYTES, 0};
    /* room for about what the first row's pieces hold, per row: few regrowths */
    Py_ssize_t guess = 0;
    if (PyList_GET_SIZE(rows) > 0) {
        PyObject *row = PyList_GET_ITEM(rows, 0);
        for (Py_ssize_t k = at; k < at + 4; k++) {
            PyObject *piece = item_of(row, k);
            if (piece != NULL && PyBytes_CheckExact(piece)) guess += PyBytes_GET_SIZE(piece);
        }
    }
    int r = DONE;
    if (guess > 0 && guess < (PY_SSIZE_T_MAX / 2) / (PyList_GET_SIZE(rows) + 1) &&
        reserve(&b, (guess + guess / 4) * PyList_GET_SIZE(rows)) < 0) {
        r = FAILED;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows) && r == DONE; i++) {
        r = csv_row(&b, &scratch, PyList_GET_ITEM(rows, i), at, position, names, kinds);
    }
    if (scratch.heap) PyMem_Free(scratch.data);
    return finish(&b, r);
}

/* ---- module ---------------------------------------------------------------------------- */

static PyObject *
module_dumps(PyObject *module, PyObject *value)
{
    char stack[STACK_BYTES];
    Buf b = {stack, 0, STACK_BYTES, 0};
    int r = write_value(&b, value, 0);
    return finish(&b, r);
}

static PyMethodDef module_methods[] = {
    {"dumps", module_dumps, METH_O,
     "dumps(value) -> bytes | None: RFC 8785 bytes of a JSON value (exact dict, list, str, "
     "int within int64, bool, None), or None where only the Python reference is exact."},
    /* export (evidence packs) */
    {"canonical_json", module_canonical_json, METH_O,
     "canonical_json(text: bytes) -> bytes | None: the sorted compact form of a JSON text "
     "(as leaf_sql.unchecked_json), or None where it leaves the text to Python."},
    {"leaf_lines", (PyCFunction)(void (*)(void))module_leaf_lines, METH_FASTCALL,
     "leaf_lines(rows, at, key) -> list[bytes | None]: each row's leaf (0x00 prefix) from "
     "its pieces row[at:at + 3] (run, jsonb text, run), None where Python must join it."},
    {"csv_rows", (PyCFunction)(void (*)(void))module_csv_rows, METH_FASTCALL,
     "csv_rows(rows, at, position, names, kinds) -> bytes | None: the rows' events.csv "
     "lines (auditor/evidence/pack_csv.py), None where Python must write them."},
    /* end export */
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef leafc_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "auditor.evidence._leafc",
    .m_doc = "Leaf bytes (RFC 8785) in C; see auditor/evidence/leaves.py.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__leafc(void)
{
    for (int c = 0; c < 0x20; c++) {
        ESCAPE[c] = 1;
    }
    ESCAPE['"'] = 1;
    ESCAPE['\\'] = 1;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    if (UUID_TYPE == NULL) {
        PyObject *uuid = PyImport_ImportModule("uuid");
        if (uuid == NULL) {
            return NULL;
        }
        UUID_TYPE = PyObject_GetAttrString(uuid, "UUID");
        Py_DECREF(uuid);
        if (UUID_TYPE == NULL) {
            return NULL;
        }
        STR_INT = PyUnicode_InternFromString("int");
        STR_UTCOFFSET = PyUnicode_InternFromString("utcoffset");
        SIXTY_FOUR = PyLong_FromLong(64);
        if (STR_INT == NULL || STR_UTCOFFSET == NULL || SIXTY_FOUR == NULL) {
            return NULL;
        }
    }
    if (PyType_Ready(&PlanType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&leafc_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "MAX_DEPTH", MAX_DEPTH) < 0 ||
        PyModule_AddObjectRef(module, "Plan", (PyObject *)&PlanType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
