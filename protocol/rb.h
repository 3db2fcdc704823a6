/*
 * rb.h - project-wide result codes and tiny helpers shared by every layer.
 *
 * Convention (house style): functions return 0 (RB_OK) on success and a negative
 * rb_err on failure; RB_EAGAIN means "would block, try later" and is not an
 * error. Constructors return NULL instead. Detail goes to the log or to an
 * error buffer owned by the caller.
 */
#ifndef RB_H
#define RB_H

#include <stddef.h>
#include <stdint.h>

enum rb_err {
	RB_OK = 0,
	RB_EAGAIN = -1,    /* would block; retry later */
	RB_ENOMEM = -2,
	RB_EINVAL = -3,    /* bad argument or configuration */
	RB_EPROTO = -4,    /* malformed peer input */
	RB_ETOOBIG = -5,   /* over a size limit */
	RB_EIO = -6,       /* transport or system error */
	RB_ETIMEDOUT = -7,
	RB_ENOTFOUND = -8,
	RB_ELIMIT = -9,    /* over a count or rate limit */
	RB_ECLOSED = -10,  /* peer or object already closed */
	RB_EEXIST = -11,
	RB_EREFUSED = -12, /* the other side said no */
};

/* Static string naming an rb_err; never NULL. Thread-safe. */
const char *rb_strerror(int err);

/* Lower-case hex of in[0..n): writes 2 * n digits and a NUL to out, which
 * must hold 2 * n + 1 bytes. Pure; any thread. */
void rb_hex(const void *in, size_t n, char *out);

/*
 * Strict decimal: s[0..len) must be one or more ASCII digits and nothing
 * else (no sign, no blanks, no "0x", no trailing junk), with a value of at
 * most max (checked digit by digit: no overflow, whatever the length;
 * leading zeros are allowed). RB_OK with *out set, else RB_EINVAL (empty
 * or not a digit) or RB_ETOOBIG (over max); *out is untouched on failure.
 * Anything looser (strtoll's blanks and "+") would let two different
 * strings stand for one number, which a signature must not allow.
 */
int rb_parse_dec(const char *s, size_t len, uint64_t max, uint64_t *out);
/* The same over a NUL-terminated string; NULL is RB_EINVAL. */
int rb_parse_decs(const char *s, uint64_t max, uint64_t *out);

#define RB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RB_CONTAINER_OF(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

#endif
