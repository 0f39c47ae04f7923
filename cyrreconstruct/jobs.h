/*
 * jobs.h: a small pool of worker processes for commands that do one
 * independent piece of work per item (reconstruct: one mailbox each).
 *
 * Items 0..n-1 are handed out one at a time to njobs forked workers. What
 * a worker prints to stdout and stderr while it runs an item is captured
 * and replayed by the parent in item order, stderr first (the order of a
 * sequential run whose stdout is flushed after each item), so the output
 * is that of the sequential run, byte for byte.
 */
#ifndef CYRUS_CYRRECONSTRUCT_JOBS_H
#define CYRUS_CYRRECONSTRUCT_JOBS_H

#include <stddef.h>

struct jobs_ops {
	/* In each worker after fork, before its first item; 0 or -1 (the
	 * worker then exits, and its items go to the others). */
	int (*child_init)(void *rock);
	/* In a worker: runs item i, returns its exit code (0: fine). */
	int (*run)(void *rock, size_t i);
	/* In the parent, in item order, after the item's output. */
	void (*done)(void *rock, size_t i, int rc);
	/* In the parent, before an item's output is printed (may be NULL). */
	void (*before_output)(void *rock);
};

/*
 * Runs every item, in njobs workers (at most n). An item whose worker
 * dies is reported on stderr and done() gets EX_SOFTWARE; items left
 * when no worker is alive run in the parent. Returns 0, or -1 if no
 * worker could be started (nothing was run: run them sequentially).
 */
int jobs_run(size_t n, unsigned njobs, const struct jobs_ops *ops,
	     void *rock);

/* The number of online CPUs, at least 1. */
unsigned jobs_ncpus(void);

#endif
