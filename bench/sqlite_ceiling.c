/* SQLite batched-insert ceiling on this machine (bench/README.md).
 *
 * A fresh database file in a temporary directory, WAL, one prepared
 * INSERT INTO t(id, blob) of a 100-byte blob, transactions of 1000 rows,
 * run for about 1.5 s at synchronous = NORMAL and again (fresh file) at
 * synchronous = FULL.  Prints one line per mode:
 *
 *     ceiling normal <rows/s> rows/s (<rows> rows, <txns> txns, <s> s)
 *     ceiling full   <rows/s> rows/s (...)
 *
 * Options: -t <seconds per mode> (default 1.5), -b <rows per txn> (1000),
 * -d <directory for the temp dir> (default $TMPDIR or /tmp).
 * It measures, it does not judge: exit status is 0 unless SQLite fails. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(sqlite3 *db, const char *what)
{
	fprintf(stderr, "sqlite_ceiling: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
	exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "sqlite_ceiling: %s: %s\n", sql, msg ? msg : "?");
		exit(1);
	}
}

static void run(const char *dir, const char *mode, double seconds, int batch)
{
	char path[PATH_MAX];
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
	unsigned char blob[100];
	long long rows = 0, txns = 0, id = 0;
	double t0, t1;

	snprintf(path, sizeof path, "%s/ceiling-%s.db", dir, mode);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					 SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		die(db, path);
	exec(db, "PRAGMA journal_mode = WAL");
	exec(db, strcmp(mode, "full") == 0 ? "PRAGMA synchronous = FULL"
					   : "PRAGMA synchronous = NORMAL");
	exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)");
	if (sqlite3_prepare_v2(db, "INSERT INTO t(id, payload) VALUES(?, ?)", -1, &ins, NULL) ||
	    sqlite3_prepare_v2(db, "BEGIN", -1, &begin, NULL) ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL))
		die(db, "prepare");
	for (size_t i = 0; i < sizeof blob; i++)
		blob[i] = (unsigned char)(i * 7 + 1);

	t0 = now();
	t1 = t0;
	while (t1 - t0 < seconds) {
		if (sqlite3_step(begin) != SQLITE_DONE)
			die(db, "BEGIN");
		sqlite3_reset(begin);
		for (int i = 0; i < batch; i++) {
			sqlite3_bind_int64(ins, 1, ++id);
			sqlite3_bind_blob(ins, 2, blob, (int)sizeof blob, SQLITE_STATIC);
			if (sqlite3_step(ins) != SQLITE_DONE)
				die(db, "INSERT");
			sqlite3_reset(ins);
		}
		if (sqlite3_step(commit) != SQLITE_DONE)
			die(db, "COMMIT");
		sqlite3_reset(commit);
		rows += batch;
		txns++;
		t1 = now();
	}
	printf("ceiling %-6s %.0f rows/s (%lld rows, %lld txns of %d, %.2f s)\n", mode,
	       (double)rows / (t1 - t0), rows, txns, batch, t1 - t0);
	fflush(stdout);

	sqlite3_finalize(ins);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	if (sqlite3_close(db) != SQLITE_OK)
		die(db, "close");
	unlink(path);
	snprintf(path, sizeof path, "%s/ceiling-%s.db-wal", dir, mode);
	unlink(path);
	snprintf(path, sizeof path, "%s/ceiling-%s.db-shm", dir, mode);
	unlink(path);
}

int main(int argc, char **argv)
{
	double seconds = 1.5;
	int batch = 1000, opt;
	const char *base = getenv("TMPDIR");
	char dir[PATH_MAX];

	if (!base || !*base)
		base = "/tmp";
	while ((opt = getopt(argc, argv, "t:b:d:")) != -1) {
		switch (opt) {
		case 't': seconds = atof(optarg); break;
		case 'b': batch = atoi(optarg); break;
		case 'd': base = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-t seconds] [-b rows_per_txn] [-d dir]\n", argv[0]);
			return 2;
		}
	}
	if (seconds <= 0 || batch <= 0) {
		fprintf(stderr, "sqlite_ceiling: -t and -b must be positive\n");
		return 2;
	}
	snprintf(dir, sizeof dir, "%s/rainbow-ceiling-XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "sqlite_ceiling: mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	printf("ceiling sqlite %s, WAL, INSERT (id, 100-byte blob), %d rows per txn, %.1f s per mode\n",
	       sqlite3_libversion(), batch, seconds);
	run(dir, "normal", seconds, batch);
	run(dir, "full", seconds, batch);
	rmdir(dir);
	return 0;
}
