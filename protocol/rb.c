#include "protocol/rb.h"

const char *rb_strerror(int err)
{
	switch (err) {
	case RB_OK: return "ok";
	case RB_EAGAIN: return "try again";
	case RB_ENOMEM: return "out of memory";
	case RB_EINVAL: return "invalid argument";
	case RB_EPROTO: return "protocol error";
	case RB_ETOOBIG: return "too big";
	case RB_EIO: return "i/o error";
	case RB_ETIMEDOUT: return "timed out";
	case RB_ENOTFOUND: return "not found";
	case RB_ELIMIT: return "limit reached";
	case RB_ECLOSED: return "closed";
	case RB_EEXIST: return "already exists";
	case RB_EREFUSED: return "refused";
	}
	return "unknown error";
}
