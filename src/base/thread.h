/*
 * thread.h - thread affinity, asserted: a struct thread_owner records the
 * one thread allowed to touch an object, THREAD_ASSERT() checks it at the
 * object's entry points. A plain assert: on in debug and sanitizer builds,
 * compiled out (argument not evaluated) with NDEBUG.
 *
 * The owner changes hands with thread_owner_set(), called by the thread
 * that takes over (e.g. first thing in its start routine, or after
 * joining the previous owner). Not atomic: a hand-over must be ordered
 * with every check by the other thread, as pthread_create/pthread_join or
 * a mutex do; the owner is a property of a phase of the program, never
 * raced for. Header only, no state.
 */
#ifndef RB_THREAD_H
#define RB_THREAD_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>

struct thread_owner {
	pthread_t tid;
	bool set;       /* false: no owner yet, every check fails */
};

/* The calling thread becomes the owner. */
static inline void thread_owner_set(struct thread_owner *o)
{
	o->tid = pthread_self();
	o->set = true;
}

/* Whether the calling thread owns o. */
static inline bool thread_owner_is_me(const struct thread_owner *o)
{
	return o->set && pthread_equal(o->tid, pthread_self());
}

/* "Cannot happen": the caller runs on o's owner thread. */
#define THREAD_ASSERT(o) assert(thread_owner_is_me(o))

#endif
