#include "src/base/idmap.h"

#include <stdlib.h>

#include "protocol/rb.h"

static size_t slot_of(uint64_t id, size_t cap)
{
	/* Fibonacci hashing spreads sequential ids over the table. */
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

void idmap_free(struct idmap *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->len = 0;
}

void *idmap_get(const struct idmap *m, uint64_t id)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->slots[i].id == id)
			return m->slots[i].val;
		if (m->slots[i].id == 0)
			return NULL;
	}
}

static int grow(struct idmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	struct idmap_slot *ns = calloc(ncap, sizeof(*ns));
	if (!ns)
		return RB_ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].id)
			continue;
		size_t j = slot_of(m->slots[i].id, ncap);
		while (ns[j].id)
			j = (j + 1) & (ncap - 1);
		ns[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = ns;
	m->cap = ncap;
	return RB_OK;
}

int idmap_put(struct idmap *m, uint64_t id, void *val)
{
	/* Keep the load under 3/4 so probe chains stay short. */
	if ((m->len + 1) * 4 > m->cap * 3 && grow(m) != RB_OK)
		return RB_ENOMEM;
	size_t i = slot_of(id, m->cap);
	while (m->slots[i].id && m->slots[i].id != id)
		i = (i + 1) & (m->cap - 1);
	if (!m->slots[i].id)
		m->len++;
	m->slots[i].id = id;
	m->slots[i].val = val;
	return RB_OK;
}

void *idmap_del(struct idmap *m, uint64_t id)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1, i = slot_of(id, m->cap);
	while (m->slots[i].id != id) {
		if (!m->slots[i].id)
			return NULL;
		i = (i + 1) & mask;
	}
	void *val = m->slots[i].val;
	/* Backward-shift: pull later members of the cluster into the hole when
	 * their home slot does not lie cyclically in (hole, j]. */
	size_t hole = i;
	for (size_t j = (i + 1) & mask; m->slots[j].id; j = (j + 1) & mask) {
		size_t home = slot_of(m->slots[j].id, m->cap);
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			m->slots[hole] = m->slots[j];
			hole = j;
		}
	}
	m->slots[hole].id = 0;
	m->slots[hole].val = NULL;
	m->len--;
	return val;
}

int idmap_next(const struct idmap *m, size_t *i, uint64_t *id, void **val)
{
	for (; *i < m->cap; (*i)++) {
		if (m->slots[*i].id) {
			*id = m->slots[*i].id;
			*val = m->slots[*i].val;
			(*i)++;
			return 1;
		}
	}
	return 0;
}
