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

#define RB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RB_CONTAINER_OF(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

#endif
