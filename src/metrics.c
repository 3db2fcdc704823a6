#include "src/metrics.h"

atomic_uint_fast64_t metrics[M__COUNT];

static const char *const names[] = {
#define METRIC_NAME(id, name, help) name,
	METRICS_LIST(METRIC_NAME)
#undef METRIC_NAME
};

static const char *const helps[] = {
#define METRIC_HELP(id, name, help) help,
	METRICS_LIST(METRIC_HELP)
#undef METRIC_HELP
};

const char *metric_name(enum metric_id id)
{
	return names[id];
}

const char *metric_help(enum metric_id id)
{
	return helps[id];
}
