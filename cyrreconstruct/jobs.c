/*
 * A pool of forked workers whose output is replayed in item order; see
 * jobs.h. Each worker has a task pipe (the parent writes an item number)
 * and a result pipe (the worker writes a header, then the captured stdout
 * and stderr). The parent hands a worker its next item only after it has
 * read the worker's whole result, so neither side can block the other.
 */
#include "compat.h"

#include "jobs.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xmalloc.h"

struct worker {
	pid_t pid;
	int task_fd, res_fd; /* -1: gone */
	bool busy;
	size_t item;
};

struct result_hdr {
	uint64_t item;
	int32_t rc;
	uint32_t pad;
	uint64_t outlen, errlen;
};

struct result {
	bool ready;
	int rc;
	char *out, *err;
	size_t outlen, errlen;
};

static int write_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* 1: all read, 0: EOF first, -1: error. */
static int read_all(int fd, void *p, size_t n)
{
	char *s = p;
	while (n) {
		ssize_t r = read(fd, s, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		s += r;
		n -= (size_t)r;
	}
	return 1;
}

static void worker_main(int task_fd, int res_fd, const struct jobs_ops *ops,
			void *rock)
{
	uint64_t item;

	if (ops->child_init && ops->child_init(rock) < 0)
		_exit(EX_TEMPFAIL);
	while (read_all(task_fd, &item, sizeof(item)) == 1) {
		char *ob = NULL, *eb = NULL;
		size_t ol = 0, el = 0;
		FILE *o = open_memstream(&ob, &ol);
		FILE *e = open_memstream(&eb, &el);
		FILE *so = stdout, *se = stderr;
		if (!o || !e)
			_exit(EX_OSERR);
		/*
		 * The item's code prints with printf and fprintf(stderr):
		 * pointing the standard streams at memory captures it
		 * without threading a FILE through every function (glibc's
		 * stdout and stderr are plain variables).
		 */
		stdout = o;
		stderr = e;
		int rc = ops->run(rock, (size_t)item);
		fflush(o);
		fflush(e);
		stdout = so;
		stderr = se;
		fclose(o);
		fclose(e);
		struct result_hdr h = { item, rc, 0, ol, el };
		if (write_all(res_fd, &h, sizeof(h)) < 0 ||
		    write_all(res_fd, ob, ol) < 0 ||
		    write_all(res_fd, eb, el) < 0)
			_exit(EX_IOERR);
		free(ob);
		free(eb);
	}
	_exit(0);
}

static int spawn(struct worker *w, struct worker *all, size_t nall,
		 const struct jobs_ops *ops, void *rock)
{
	int tp[2], rp[2];
	if (pipe(tp) < 0)
		return -1;
	if (pipe(rp) < 0) {
		close(tp[0]);
		close(tp[1]);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(tp[0]);
		close(tp[1]);
		close(rp[0]);
		close(rp[1]);
		return -1;
	}
	if (pid == 0) {
		for (size_t k = 0; k < nall; k++) {
			if (all[k].task_fd >= 0)
				close(all[k].task_fd);
			if (all[k].res_fd >= 0)
				close(all[k].res_fd);
		}
		close(tp[1]);
		close(rp[0]);
		worker_main(tp[0], rp[1], ops, rock);
	}
	close(tp[0]);
	close(rp[1]);
	w->pid = pid;
	w->task_fd = tp[1];
	w->res_fd = rp[0];
	w->busy = false;
	return 0;
}

static void retire(struct worker *w)
{
	if (w->task_fd >= 0)
		close(w->task_fd);
	if (w->res_fd >= 0)
		close(w->res_fd);
	w->task_fd = w->res_fd = -1;
	w->busy = false;
	while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static bool give(struct worker *w, size_t item)
{
	uint64_t v = item;
	if (write_all(w->task_fd, &v, sizeof(v)) < 0)
		return false;
	w->busy = true;
	w->item = item;
	return true;
}

/* Reads one result of w into res; false if the worker is gone. */
static bool collect(struct worker *w, struct result *res, size_t n)
{
	struct result_hdr h;
	if (read_all(w->res_fd, &h, sizeof(h)) != 1 || h.item != w->item ||
	    h.item >= n)
		return false;
	struct result *r = &res[h.item];
	r->out = xmalloc(h.outlen + 1);
	r->err = xmalloc(h.errlen + 1);
	if (read_all(w->res_fd, r->out, h.outlen) != 1 ||
	    read_all(w->res_fd, r->err, h.errlen) != 1) {
		free(r->out);
		free(r->err);
		r->out = r->err = NULL;
		return false;
	}
	r->outlen = h.outlen;
	r->errlen = h.errlen;
	r->rc = h.rc;
	r->ready = true;
	w->busy = false;
	return true;
}

/* Prints the results ready from emit on, in order; returns the next. */
static size_t replay(struct result *res, size_t n, size_t emit,
		     const struct jobs_ops *ops, void *rock)
{
	while (emit < n && res[emit].ready) {
		struct result *r = &res[emit];
		if (ops->before_output && (r->errlen || r->outlen))
			ops->before_output(rock);
		if (r->errlen)
			fwrite(r->err, 1, r->errlen, stderr);
		if (r->outlen)
			fwrite(r->out, 1, r->outlen, stdout);
		fflush(stdout);
		free(r->out);
		free(r->err);
		r->out = r->err = NULL;
		if (ops->done)
			ops->done(rock, emit, r->rc);
		emit++;
	}
	return emit;
}

int jobs_run(size_t n, unsigned njobs, const struct jobs_ops *ops,
	     void *rock)
{
	size_t nw = njobs < n ? njobs : n, alive = 0, next = 0, emit = 0;
	struct worker *ws = xcalloc(nw ? nw : 1, sizeof(*ws));
	struct result *res = xcalloc(n ? n : 1, sizeof(*res));
	struct pollfd *pfd = xcalloc(nw ? nw : 1, sizeof(*pfd));
	struct sigaction ign, old;

	/* A worker gone mid-write must not kill the parent. */
	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &ign, &old);
	for (size_t k = 0; k < nw; k++)
		ws[k].task_fd = ws[k].res_fd = -1;
	for (size_t k = 0; k < nw; k++)
		if (spawn(&ws[k], ws, k, ops, rock) == 0)
			alive++;
		else
			ws[k].pid = -1;
	if (!alive) {
		free(ws);
		free(res);
		free(pfd);
		sigaction(SIGPIPE, &old, NULL);
		return -1;
	}
	for (size_t k = 0; k < nw && next < n; k++)
		if (ws[k].task_fd >= 0 && give(&ws[k], next))
			next++;

	while (emit < n) {
		size_t np = 0;
		for (size_t k = 0; k < nw; k++)
			if (ws[k].busy) {
				pfd[np].fd = ws[k].res_fd;
				pfd[np].events = POLLIN;
				pfd[np].revents = 0;
				np++;
			}
		if (np && poll(pfd, (nfds_t)np, -1) < 0 && errno != EINTR)
			break;
		for (size_t k = 0, p = 0; k < nw && np; k++) {
			struct worker *w = &ws[k];
			if (!w->busy)
				continue;
			if (!pfd[p++].revents)
				continue;
			if (!collect(w, res, n)) {
				/* Dead: its item is lost, not retried (it
				 * may be what killed it). */
				struct result *r = &res[w->item];
				fprintf(stderr, "worker %ld died on item %zu\n",
					(long)w->pid, w->item);
				r->rc = EX_SOFTWARE;
				r->ready = true;
				retire(w);
				alive--;
				continue;
			}
			if (next < n && give(w, next))
				next++;
		}
		if (!alive) {
			/* Nobody left: the rest runs here, in order. */
			emit = replay(res, n, emit, ops, rock);
			for (; next < n; next++, emit++) {
				int rc = ops->run(rock, next);
				fflush(NULL);
				if (ops->done)
					ops->done(rock, next, rc);
			}
		} else if (!np) {
			/* Alive but idle with work left: a give failed. */
			for (size_t k = 0; k < nw && next < n; k++)
				if (ws[k].task_fd >= 0 && !ws[k].busy) {
					if (give(&ws[k], next)) {
						next++;
					} else {
						retire(&ws[k]);
						alive--;
					}
				}
		}
		emit = replay(res, n, emit, ops, rock);
	}
	for (size_t k = 0; k < nw; k++)
		if (ws[k].task_fd >= 0 || ws[k].res_fd >= 0)
			retire(&ws[k]);
	sigaction(SIGPIPE, &old, NULL);
	free(ws);
	free(res);
	free(pfd);
	return 0;
}

unsigned jobs_ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}
