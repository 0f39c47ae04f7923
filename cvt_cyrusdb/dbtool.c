/*
 * cyrus dbtool: cyr_dbtool's arguments, actions and output bytes. Where the
 * real tool stays silent about a failure (a set that did not happen, a
 * database that is not consistent) we say so on stderr and exit non-zero;
 * stdout is the same.
 */
#include "compat.h"

#include <getopt.h>

#include "buf.h"
#include "commands.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "error.h"
#include "imapstr.h"
#include "log.h"
#include "salvage.h"
#include "xmalloc.h"

/* Largest literal accepted in batch mode. */
#define BATCH_MAX_LITERAL (1UL << 30)

static int exit_for(int r)
{
	switch (r) {
	case CYRUSDB_OK:
		return EX_OK;
	case CYRUSDB_NOTFOUND:
		return EX_NOINPUT;
	case CYRUSDB_AGAIN:
	case CYRUSDB_LOCKED:
		return EX_TEMPFAIL;
	case CYRUSDB_INTERNAL:
		return EX_DATAERR;
	case CYRUSDB_READONLY:
		return EX_NOPERM;
	case CYRUSDB_NOTIMPLEMENTED:
		return EX_UNAVAILABLE;
	default:
		return EX_IOERR;
	}
}

static int print_record(void *rock UNUSED, const char *key, size_t keylen,
			const char *data, size_t datalen)
{
	fwrite_unlocked(key, 1, keylen, stdout);
	putc_unlocked('\t', stdout);
	fwrite_unlocked(data, 1, datalen, stdout);
	putc_unlocked('\n', stdout);
	return ferror(stdout) ? CYRUSDB_IOERROR : 0;
}

static int print_amap(void *rock, const char *key, size_t keylen,
		      const char *data, size_t datalen)
{
	struct buf *out = rock;
	buf_reset(out);
	imapstr_append_amap(out, key, keylen);
	buf_addch(out, ' ');
	imapstr_append_amap(out, data, datalen);
	buf_addch(out, '\n');
	fwrite(out->s, 1, out->len, stdout);
	return ferror(stdout) ? CYRUSDB_IOERROR : 0;
}

/*
 * One line of stdin for get/set/delete without arguments: the key runs to
 * the first TAB (or the end of the line), the value to the end of the line.
 * Returns false at the end of input or on a line with an empty key, where
 * cyr_dbtool stops too. *line and *cap are getline's buffer, kept between
 * calls (a million-line set reads at memory speed, not a byte at a time).
 */
static bool read_key_value(char **line, size_t *cap, struct buf *key,
			   struct buf *value)
{
	ssize_t n = getline(line, cap, stdin);
	buf_reset(key);
	buf_reset(value);
	if (n <= 0)
		return false;
	if ((*line)[n - 1] == '\n')
		n--;
	const char *tab = memchr(*line, '\t', n);
	size_t klen = tab ? (size_t)(tab - *line) : (size_t)n;
	buf_add(key, *line, klen);
	if (tab)
		buf_add(value, tab + 1, n - klen - 1);
	return key->len > 0;
}

static int db_failed(const char *fname, struct cyrusdb *db, int r,
		     const char *what)
{
	const char *msg = r == CYRUSDB_NOTFOUND ? "no such key"
						: cyrusdb_errmsg(db);
	/* Backends name the file themselves; don't say it twice. */
	size_t flen = strlen(fname);
	if (msg[0] == '\'' && !strncmp(msg + 1, fname, flen) &&
	    !strncmp(msg + 1 + flen, "': ", 3))
		msg += flen + 4;
	log_error("cannot %s '%s': %s", what, fname, msg);
	return exit_for(r);
}

static int do_keyed(struct cyrusdb *db, const char *fname, const char *action,
		    int argc, char **argv, struct cyrusdb_txn **tidp)
{
	struct buf key = BUF_INIT, value = BUF_INIT;
	bool is_get = !strcmp(action, "get"), is_set = !strcmp(action, "set");
	bool from_stdin = argc < 4;
	char *line = NULL;
	size_t cap = 0;
	int ret = 0;

	if (!from_stdin) {
		buf_sets(&key, argv[3]);
		if (is_set) {
			if (argc < 5) {
				log_error("set needs a key and a value");
				return EX_USAGE;
			}
			buf_sets(&value, argv[4]);
		}
	}
	while (from_stdin ? read_key_value(&line, &cap, &key, &value)
			  : key.len) {
		int r;
		if (is_get) {
			const char *data = NULL;
			size_t datalen = 0;
			r = cyrusdb_fetch(db, key.s, key.len, &data, &datalen,
					  tidp);
			/* A missing key prints an empty line, as cyr_dbtool. */
			if (r == CYRUSDB_NOTFOUND)
				r = 0;
			if (!r && data)
				fwrite(data, 1, datalen, stdout);
			putchar('\n');
		} else if (is_set) {
			r = cyrusdb_store(db, key.s, key.len, value.s,
					  value.len, tidp);
		} else {
			r = cyrusdb_delete(db, key.s, key.len, tidp, true);
		}
		if (r && !ret)
			ret = db_failed(fname, db, r, action);
		if (!from_stdin)
			break;
	}
	free(line);
	buf_release(&key);
	buf_release(&value);
	return ret;
}

/* Cyrus's IMAP error texts for batch mode's FAILED line. */
#define E_NOTFOUND "Item does not exist"
#define E_LOCKED "Mailbox is locked"
#define E_SYNTAX "Syntax error in parameters"
#define E_UNKNOWN "Mailbox does not exist"

static int do_batch(struct cyrusdb *db)
{
	struct buf cmd = BUF_INIT, key = BUF_INIT, val = BUF_INIT;
	struct buf out = BUF_INIT;
	struct cyrusdb_txn *tid = NULL, **tidp = NULL;
	const char *failure = NULL;
	int line = 0, r = 0;

	for (;;) {
		line++;
		buf_reset(&key);
		buf_reset(&val);
		int c = imapstr_getword(stdin, &cmd);
		if (c == EOF && !cmd.len)
			break;
		if (c == ' ')
			c = imapstr_getastring(stdin, &key, BATCH_MAX_LITERAL);
		if (c == ' ')
			c = imapstr_getastring(stdin, &val, BATCH_MAX_LITERAL);
		if (c == '\r')
			c = getchar();
		if (c != '\n') {
			failure = E_SYNTAX;
			break;
		}
		if (!cmd.len)
			continue;
		bool needs_key = !strcmp(cmd.s, "SET") || !strcmp(cmd.s, "GET") ||
				 !strcmp(cmd.s, "DELETE");
		if (needs_key && !key.len) {
			/* cyr_dbtool asserts here; we say what is wrong. */
			failure = E_SYNTAX;
			break;
		}
		if (!strcmp(cmd.s, "BEGIN")) {
			if (tidp) {
				failure = E_LOCKED;
				break;
			}
			tidp = &tid;
		} else if (!strcmp(cmd.s, "SHOW")) {
			r = cyrusdb_foreach(db, key.s, key.len, NULL,
					    print_amap, &out, tidp);
			fflush(stdout);
		} else if (!strcmp(cmd.s, "SET")) {
			r = cyrusdb_store(db, key.s, key.len, val.s, val.len,
					  tidp);
		} else if (!strcmp(cmd.s, "GET")) {
			const char *data;
			size_t datalen;
			r = cyrusdb_fetch(db, key.s, key.len, &data, &datalen,
					  tidp);
			if (!r) {
				print_amap(&out, key.s, key.len, data, datalen);
				fflush(stdout);
			} else if (r == CYRUSDB_NOTFOUND) {
				r = 0;
			}
		} else if (!strcmp(cmd.s, "DELETE")) {
			r = cyrusdb_delete(db, key.s, key.len, tidp, true);
		} else if (!strcmp(cmd.s, "COMMIT") || !strcmp(cmd.s, "ABORT")) {
			if (!tidp) {
				failure = E_NOTFOUND;
				break;
			}
			r = cmd.s[0] == 'C' ? cyrusdb_commit(db, tid)
					    : cyrusdb_abort(db, tid);
			tid = NULL;
			tidp = NULL;
		} else {
			failure = E_UNKNOWN;
			break;
		}
		if (r) {
			failure = cyrusdb_errmsg(db);
			break;
		}
	}
	if (failure) {
		if (tid)
			cyrusdb_abort(db, tid);
		tid = NULL;
		fflush(stdout);
		fprintf(stderr, "FAILED: line %d at cmd %.*s with error %s\n",
			line, (int)cmd.len, cmd.s, failure);
	}
	/* An open transaction at the end of input is committed, as -T. */
	if (tid && (r = cyrusdb_commit(db, tid)) && !failure)
		failure = cyrusdb_errmsg(db);
	buf_release(&cmd);
	buf_release(&key);
	buf_release(&val);
	buf_release(&out);
	if (!failure)
		return 0;
	return r ? exit_for(r) : EX_DATAERR;
}

/*
 * salvage OUT: rescue what checks out in a damaged twoskip or skiplist
 * (lib/salvage.h) into a fresh OUT of the same backend, or with OUT "-"
 * only report. The report goes to stdout. Report only: exit 0 if nothing
 * was lost, EX_DATAERR if something was.
 */
static int do_salvage(const char *fname, const char *backend, int flags,
		      int argc, char **argv)
{
	struct salvage_report rep;
	struct error err = ERROR_INIT;
	struct buf out = BUF_INIT;
	bool mboxsort = flags & CYRUSDB_MBOXSORT;
	int r;

	if (argc != 4) {
		log_error("salvage needs an output file (or - to report only)");
		return EX_USAGE;
	}
	const char *outfile = argv[3];
	bool report_only = !strcmp(outfile, "-");
	if (!report_only && outfile[0] != '/') {
		log_error("salvage: '%s' is not an absolute path", outfile);
		return EX_USAGE;
	}
	if (report_only)
		r = salvage_read(fname, backend, mboxsort, NULL, NULL, &rep,
				 &err);
	else
		r = salvage_file(fname, backend, mboxsort, outfile, &rep, &err);
	if (r < 0) {
		log_error("%s", err.msg);
		salvage_report_release(&rep);
		return error_exitcode(err.kind);
	}
	salvage_report_text(&rep, fname, &out);
	if (!report_only)
		buf_printf(&out, "wrote: %s\n", outfile);
	fwrite(out.s, 1, out.len, stdout);
	r = report_only && salvage_report_lossy(&rep) ? EX_DATAERR : 0;
	buf_release(&out);
	salvage_report_release(&rep);
	return r;
}

int cmd_dbtool(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ NULL, 0, NULL, 0 },
	};
	const char *alt_config = NULL;
	int flags = 0, c, ret = 0, r;
	bool one_txn = false;

	while ((c = getopt_long(argc, argv, "C:MntTc", longopts, NULL)) != -1) {
		switch (c) {
		case 'C':
			alt_config = optarg;
			break;
		case 'c':
			flags |= CYRUSDB_CONVERT;
			break;
		case 'M':
			flags |= CYRUSDB_MBOXSORT;
			break;
		case 'n':
			flags |= CYRUSDB_CREATE;
			break;
		case 't':
			one_txn = false;
			break;
		case 'T':
			one_txn = true;
			break;
		default:
			cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 3)
		cyrus_usage(ctx, false);
	const char *fname = argv[0], *backend = argv[1], *action = argv[2];
	if (!cyrusdb_backend_exists(backend)) {
		log_error("unknown database backend '%s' (usable backends: "
			  "flat, skiplist, quotalegacy, twoskip)", backend);
		return EX_USAGE;
	}
	static const char *const actions[] = {
		"show", "get", "set", "delete", "batch", "consistent",
		"consistency", "dump", "repack", "salvage",
	};
	bool known = false;
	for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
		known |= !strcmp(action, actions[i]);
	if (!known) {
		if (!strcmp(action, "damage")) {
			log_error("the 'damage' action (a crash-test aid of "
				  "cyr_dbtool) is not provided");
			return EX_USAGE;
		}
		printf("Unknown action %s\n", action);
		return EX_USAGE;
	}

	cyrus_setup(ctx, alt_config);

	/* A damaged file may not open: salvage reads it itself. */
	if (!strcmp(action, "salvage"))
		return do_salvage(fname, backend, flags, argc, argv);

	struct error err = ERROR_INIT;
	struct cyrusdb *db = NULL;
	struct cyrusdb_txn *tid = NULL, **tidp = one_txn ? &tid : NULL;
	r = cyrusdb_open(backend, fname, flags, &db, &err);
	if (r) {
		log_error("%s", err.msg);
		return error_exitcode(err.kind);
	}

	if (!strcmp(action, "get") || !strcmp(action, "set") ||
	    !strcmp(action, "delete")) {
		ret = do_keyed(db, fname, action, argc, argv, tidp);
	} else if (!strcmp(action, "batch")) {
		ret = do_batch(db);
	} else if (!strcmp(action, "show")) {
		const char *prefix = argc > 3 ? argv[3] : "";
		r = cyrusdb_foreach(db, prefix, strlen(prefix), NULL,
				    print_record, NULL, tidp);
		if (r)
			ret = db_failed(fname, db, r, "read");
	} else if (!strcmp(action, "consistent") ||
		   !strcmp(action, "consistency")) {
		r = cyrusdb_consistent(db);
		if (action[10] == 'y') {
			if (r)
				printf("Consistency Error for %s\n", fname);
		} else {
			printf(r ? "No, not consistent\n"
				 : "Yes, consistent\n");
		}
		if (r) {
			log_error("'%s' is not consistent: %s", fname,
				  cyrusdb_errmsg(db));
			ret = EX_DATAERR;
		}
	} else if (!strcmp(action, "dump")) {
		r = cyrusdb_dump(db, stdout, argc > 3 ? atoi(argv[3]) : 1);
		if (r)
			ret = db_failed(fname, db, r, "dump");
	} else if (!strcmp(action, "repack")) {
		r = cyrusdb_repack(db);
		if (r) {
			printf("Failed to repack\n");
			ret = db_failed(fname, db, r, "repack");
		}
	}

	if (tid) {
		r = ret ? cyrusdb_abort(db, tid) : cyrusdb_commit(db, tid);
		if (r && !ret)
			ret = db_failed(fname, db, r, "commit");
	}
	cyrusdb_close(&db);
	return ret;
}
