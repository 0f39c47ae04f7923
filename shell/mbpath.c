/*
 * cyrus mbpath: where a mailbox's files live, as the real mbpath prints
 * it (default data directory, -A archive, -M/-m metadata, -S sieve,
 * -U user files, -a all with labels, -j JSON).
 *
 * Arguments are external names as the admin sees them, user ids (-u) or
 * paths of uuid directories (-p). Exit status is that of the last
 * argument, as in the real tool: 65 for a missing, reserved or broken
 * mailbox, 70 for other errors.
 */
#include "compat.h"

#include <getopt.h>
#include <unistd.h>

#include "buf.h"
#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "error.h"
#include "log.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxpath.h"
#include "xmalloc.h"
#include "json.h"

#define DO_ARCHIVE (1 << 0)
#define DO_DATA (1 << 1)
#define DO_META (1 << 2)
#define DO_SIEVE (1 << 3)
#define DO_USER (1 << 4)
#define DO_ALL (DO_ARCHIVE | DO_DATA | DO_META | DO_SIEVE | DO_USER)

enum mode { MODE_NAME, MODE_USER, MODE_PATH };

/* What went wrong with one argument, as the real tool's IMAP codes. */
enum result { RES_OK, RES_NONEXISTENT, RES_RESERVED, RES_BADFORMAT,
	      RES_OTHER };

struct opts {
	bool quiet, stop, localonly, json;
	unsigned paths;
	enum mode mode;
};

static int exit_code(enum result r)
{
	switch (r) {
	case RES_OK: return 0;
	case RES_NONEXISTENT:
	case RES_RESERVED:
	case RES_BADFORMAT: return EX_DATAERR;
	default: return EX_SOFTWARE;
	}
}

/* A member of a jansson JSON_INDENT(2) object at the given depth. */
static void json_key(struct buf *out, bool *first, int depth, const char *key)
{
	buf_adds(out, *first ? "\n" : ",\n");
	*first = false;
	for (int i = 0; i < depth * 2; i++)
		buf_addch(out, ' ');
	json_append_string(out, key);
	buf_adds(out, ": ");
}

static void json_close(struct buf *out, bool first, int depth, char c)
{
	if (!first) {
		buf_addch(out, '\n');
		for (int i = 0; i < depth * 2; i++)
			buf_addch(out, ' ');
	}
	buf_addch(out, c);
}

static int print_json(struct mboxlist *ml, const struct mboxname *mbn,
		      const struct mboxlist_entry *e, const char *id)
{
	const struct config *cfg = ml->cfg;
	struct buf out = BUF_INIT, p = BUF_INIT, userid = BUF_INIT;
	struct error err = ERROR_INIT;
	bool first = true, f2;
	bool has_user = mboxname_userid(mbn, &userid);

	/* Keys sorted, as JSON_SORT_KEYS prints them. */
	buf_addch(&out, '{');
	json_key(&out, &first, 1, "archive");
	if (mboxpath_archive(cfg, &ml->ns, e->partition, e->name, id, 0, &p,
			     &err) == 0)
		json_append_string(&out, p.s);
	else
		buf_adds(&out, "null");
	json_key(&out, &first, 1, "data");
	buf_reset(&p);
	if (mboxpath_data(cfg, &ml->ns, e->partition, e->name, id, 0, &p,
			  &err) == 0)
		json_append_string(&out, p.s);
	else
		buf_adds(&out, "null");

	json_key(&out, &first, 1, "mbname");
	buf_addch(&out, '{');
	f2 = true;
	json_key(&out, &f2, 2, "boxes");
	if (!mbn->nboxes) {
		buf_adds(&out, "[]");
	} else {
		bool f3 = true;
		buf_addch(&out, '[');
		for (size_t i = 0; i < mbn->nboxes; i++) {
			buf_adds(&out, f3 ? "\n" : ",\n");
			f3 = false;
			buf_adds(&out, "      ");
			json_append_string(&out, mbn->boxes[i]);
		}
		json_close(&out, false, 2, ']');
	}
	if (mbn->domain) {
		json_key(&out, &f2, 2, "domain");
		json_append_string(&out, mbn->domain);
	}
	json_key(&out, &f2, 2, "intname");
	buf_reset(&p);
	mboxname_intname(&ml->ns, mbn, &p);
	json_append_string(&out, p.s);
	if (mbn->isdeleted) {
		json_key(&out, &f2, 2, "isdeleted");
		buf_printf(&out, "%lld", (long long)mbn->isdeleted);
	}
	if (mbn->localpart) {
		json_key(&out, &f2, 2, "localpart");
		json_append_string(&out, mbn->localpart);
	}
	if (has_user) {
		json_key(&out, &f2, 2, "userid");
		json_append_string(&out, userid.s);
	}
	json_close(&out, f2, 1, '}');

	json_key(&out, &first, 1, "meta");
	buf_reset(&p);
	if (mboxpath_meta(cfg, &ml->ns, e->partition, e->name, id,
			  MBOXPATH_DIR, false, &p, &err) == 0)
		json_append_string(&out, p.s);
	else
		buf_adds(&out, "null");

	if (has_user) {
		static const char *const files[] = {
			"conversations", "counters", "dav", "seen",
			"sieve", "sub", "xapianactive",
		};
		struct mboxname user;
		mboxname_from_userid(&ml->ns, &user, userid.s);
		json_key(&out, &first, 1, "user");
		buf_addch(&out, '{');
		f2 = true;
		for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
			buf_reset(&p);
			if (!strcmp(files[i], "sieve"))
				mboxlist_sieve_path(ml, &user, &p, &err);
			else
				mboxlist_user_path(ml, &user, files[i], &p,
						   &err);
			json_key(&out, &f2, 2, files[i]);
			json_append_string(&out, p.s);
		}
		json_close(&out, f2, 1, '}');
		mboxname_release(&user);
		/* Search tiers (NAMEsearchpartition-PART) are not listed. */
		json_key(&out, &first, 1, "xapian");
		buf_adds(&out, "{}");
	}
	json_close(&out, first, 0, '}');
	buf_addch(&out, '\n');
	fwrite(out.s, 1, out.len, stdout);
	buf_release(&out);
	buf_release(&p);
	buf_release(&userid);
	return 0;
}

static void print_path(const char *label, unsigned paths, const char *path)
{
	if (paths == DO_ALL)
		printf("%s: ", label);
	printf("%s\n", path);
}

static enum result do_paths(struct mboxlist *ml, const struct opts *o,
			    const struct mboxname *mbn,
			    const struct mboxlist_entry *e)
{
	const struct config *cfg = ml->cfg;
	struct buf p = BUF_INIT;
	struct error err = ERROR_INIT;
	enum result res = RES_OK;

	if (e->mbtype & MBTYPE_RESERVE)
		return RES_RESERVED;
	if (e->mbtype & MBTYPE_DELETED)
		return RES_NONEXISTENT;
	if (e->mbtype & MBTYPE_REMOTE) {
		if (o->localonly) {
			if (o->stop) {
				if (!o->quiet)
					log_error("non-local mailbox '%s', "
						  "stopping",
						  e->name);
				exit(255);
			}
		} else if (!o->json) {
			printf("%s!%s\n", e->server ? e->server : "(null)",
			       e->partition ? e->partition : "(null)");
		}
		return RES_OK;
	}
	if (!e->uniqueid && !(e->mbtype & MBTYPE_LEGACY_DIRS)) {
		if (!o->quiet) {
			buf_reset(&p);
			mboxname_extname(&ml->ns, mbn, "cyrus", &p);
			fprintf(stderr,
				"Mailbox has no uniqueid, needs reconstruct: "
				"%s\n",
				p.s);
		}
		buf_release(&p);
		return RES_BADFORMAT;
	}
	const char *id = e->mbtype & MBTYPE_LEGACY_DIRS ? NULL : e->uniqueid;
	if (o->json) {
		print_json(ml, mbn, e, id);
		return RES_OK;
	}
	if (o->paths & DO_ARCHIVE) {
		buf_reset(&p);
		if (mboxpath_archive(cfg, &ml->ns, e->partition, e->name, id,
				     0, &p, &err) < 0)
			goto fail;
		print_path("Archive", o->paths, p.s);
	}
	if (o->paths & DO_DATA) {
		buf_reset(&p);
		if (mboxpath_data(cfg, &ml->ns, e->partition, e->name, id, 0,
				  &p, &err) < 0)
			goto fail;
		print_path("Data", o->paths, p.s);
	}
	if (o->paths & DO_META) {
		buf_reset(&p);
		if (mboxpath_meta(cfg, &ml->ns, e->partition, e->name, id,
				  MBOXPATH_DIR, false, &p, &err) < 0)
			goto fail;
		print_path("Meta", o->paths, p.s);
	}
	if (o->paths & DO_SIEVE) {
		struct mboxname user = { 0 };
		user.localpart = mbn->localpart;
		user.domain = mbn->domain;
		buf_reset(&p);
		mboxlist_sieve_path(ml, &user, &p, &err);
		print_path("Sieve", o->paths, p.s);
	}
	if (o->paths & DO_USER) {
		buf_reset(&p);
		mboxlist_user_path(ml, mbn, NULL, &p, &err);
		print_path("User", o->paths, p.s);
	}
	buf_release(&p);
	return res;
fail:
	if (!o->quiet)
		log_error("%s: %s", e->name, err.msg);
	buf_release(&p);
	return RES_OTHER;
}

/*
 * -p: the last component of an absolute path is a uniqueid; a relative
 * path starts from the mailbox whose uuid directory is the cwd.
 */
static void name_from_path(struct mboxlist *ml, const char *path,
			   struct mboxname *mbn)
{
	char cwd[4096];
	const char *id = NULL;
	bool absolute = path[0] == '/';
	struct mboxlist_entry *e = NULL;

	mboxname_init(mbn);
	if (absolute)
		id = strrchr(path, '/');
	else if (getcwd(cwd, sizeof(cwd)))
		id = strrchr(cwd, '/');
	if (!id || mboxlist_lookup_by_uniqueid(ml, id + 1, &e, NULL, NULL))
		return;
	mboxname_from_intname(&ml->ns, mbn, e->name);
	mboxlist_entry_free(&e);
	if (absolute)
		return;
	char *copy = xstrdup(path), *save = NULL;
	for (char *sub = strtok_r(copy, "/", &save); sub;
	     sub = strtok_r(NULL, "/", &save)) {
		if (!strcmp(sub, "."))
			continue;
		if (!strcmp(sub, "..")) {
			if (!mbn->nboxes) {
				mboxname_release(mbn);
				break;
			}
			free(mbn->boxes[--mbn->nboxes]);
			continue;
		}
		mbn->boxes = xrealloc(mbn->boxes,
				      (mbn->nboxes + 1) * sizeof(char *));
		mbn->boxes[mbn->nboxes++] = xstrdup(sub);
	}
	free(copy);
	if (mbn->localpart && mbn->nboxes == 1 &&
	    !strcmp(mbn->boxes[0], "INBOX"))
		free(mbn->boxes[--mbn->nboxes]);
}

static NORETURN void usage_error(struct cyrus_ctx *ctx, const char *what)
{
	fprintf(stderr, "ERROR: %s\n", what);
	cyrus_usage(ctx, false);
}

int cmd_mbpath(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ NULL, 0, NULL, 0 },
	};
	const char *alt_config = NULL;
	struct opts o = { 0 };
	int c;

	while ((c = getopt_long(argc, argv, "C:7ajlmqsupADMSU", longopts,
				NULL)) != -1) {
		unsigned sel = 0;
		enum mode mode = MODE_NAME;
		switch (c) {
		case 'C': alt_config = optarg; break;
		case '7': break; /* names are modified UTF-7 anyway */
		case 'a': sel = DO_ALL; break;
		case 'j': o.json = true; break;
		case 'l': o.localonly = true; break;
		case 'm': sel = DO_META; break;
		case 'q': o.quiet = true; break;
		case 's': o.stop = true; break;
		case 'u': mode = MODE_USER; break;
		case 'p': mode = MODE_PATH; break;
		case 'A': sel = DO_ARCHIVE; break;
		case 'D': sel = DO_DATA; break;
		case 'M': sel = DO_META; break;
		case 'S': sel = DO_SIEVE; break;
		case 'U': sel = DO_USER; break;
		default: cyrus_usage(ctx, false);
		}
		if (sel) {
			if (o.paths)
				usage_error(ctx, "Duplicate selectors given");
			o.paths = sel;
		}
		if (mode != MODE_NAME) {
			if (o.mode != MODE_NAME)
				usage_error(ctx, "Multiple modes given");
			o.mode = mode;
		}
	}
	argc -= optind;
	argv += optind;
	if (!o.paths)
		o.paths = DO_DATA;

	cyrus_setup(ctx, alt_config);

	struct error err = ERROR_INIT;
	struct mboxlist *ml = NULL;
	if (mboxlist_open(ctx->cfg, NULL, 0, &ml, &err) < 0) {
		log_error("%s", err.msg);
		return error_exitcode(err.kind);
	}
	enum result res = RES_OK;
	for (int i = 0; i < argc; i++) {
		struct mboxname mbn;
		struct mboxlist_entry *e = NULL;
		struct buf name = BUF_INIT;

		res = RES_OK;
		if (o.mode == MODE_USER)
			mboxname_from_userid(&ml->ns, &mbn, argv[i]);
		else if (o.mode == MODE_PATH)
			name_from_path(ml, argv[i], &mbn);
		else if (mboxname_from_extname(&ml->ns, &mbn, argv[i],
					       "cyrus", NULL) < 0)
			mboxname_init(&mbn);
		mboxname_intname(&ml->ns, &mbn, &name);
		error_clear(&err);
		if (mboxlist_lookup(ml, name.s, true, &e, NULL, &err) < 0)
			res = err.kind == ERR_NOINPUT ? RES_NONEXISTENT
						      : RES_OTHER;
		else
			res = do_paths(ml, &o, &mbn, e);
		if (res == RES_OTHER && err.kind != ERR_NONE && !o.quiet)
			log_error("%s", err.msg);
		if (res != RES_OK && !o.quiet && res == RES_NONEXISTENT) {
			struct buf ext = BUF_INIT;
			fprintf(stderr, "Invalid mailbox name: '%s'", argv[i]);
			if (mboxname_extname(&ml->ns, &mbn, "cyrus", &ext) &&
			    strcmp(ext.s, argv[i]))
				fprintf(stderr, " ('%s')\n", ext.s);
			fprintf(stderr, "\n");
			buf_release(&ext);
		}
		mboxlist_entry_free(&e);
		mboxname_release(&mbn);
		buf_release(&name);
		if (res != RES_OK && o.stop) {
			if (!o.quiet)
				log_error("error in processing mailbox, "
					  "stopping");
			mboxlist_close(&ml);
			return exit_code(res);
		}
	}
	mboxlist_close(&ml);
	return exit_code(res);
}
