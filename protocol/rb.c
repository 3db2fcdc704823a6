#include "protocol/rb.h"

#include <string.h>

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

void rb_hex(const void *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = in;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int rb_parse_dec(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return RB_EINVAL;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return RB_EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return RB_ETOOBIG;
		v = v * 10 + d;
	}
	*out = v;
	return RB_OK;
}

int rb_parse_decs(const char *s, uint64_t max, uint64_t *out)
{
	return s ? rb_parse_dec(s, strlen(s), max, out) : RB_EINVAL;
}
