#include "compat.h"
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>

#include "buf.h"
#include "config_options.h"
#include "cyrusdb.h"
#include "error.h"
#include "xmalloc.h"

#define NOPTIONS ARRAY_SIZE(config_options)

/* Every key seen in the file, known or not, in file order. */
struct config_entry {
	char *key;
	char *value;
	int line;
	bool service_specific;
};

struct config {
	char *filename;
	char *ident;
	struct config_entry *entries;
	size_t nentries, alloc;
	/* Index into entries for each known option, -1 if not set. */
	long known[NOPTIONS];
	/* Expanded "{configdirectory}" defaults, per option. */
	char *expanded[NOPTIONS];
	char **included;
	size_t nincluded;
};

static int option_index(const char *name)
{
	size_t lo = 0, hi = NOPTIONS;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(name, config_options[mid].name);
		if (!c)
			return (int)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

static const char *renamed_to(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(config_renamed); i++)
		if (!strcmp(config_renamed[i].old, name))
			return config_renamed[i].new;
	return NULL;
}

int config_parse_switch(const char *p)
{
	if (*p == '0' || *p == 'n' || (*p == 'o' && p[1] == 'f') || *p == 'f')
		return 0;
	if (*p == '1' || *p == 'y' || (*p == 'o' && p[1] == 'n') || *p == 't')
		return 1;
	return -1;
}

int config_parse_duration(const char *s, int defunit, long *secs_r)
{
	long accum = 0, total = 0;
	bool neg = false, sawdigit = false;
	const char *p = s;

	if (!defunit)
		defunit = 's';
	if (*p == '-') {
		neg = true;
		p++;
	}
	if (!*p)
		return -1;
	for (;; p++) {
		int c = *p;
		if (isdigit((unsigned char)c)) {
			if (accum > (LONG_MAX - 9) / 10)
				return -1;
			accum = accum * 10 + (c - '0');
			sawdigit = true;
			continue;
		}
		if (!c) {
			if (!sawdigit)
				break;
			c = defunit; /* a trailing bare number */
		}
		if (!sawdigit)
			return -1;
		sawdigit = false;
		switch (c) {
		case 'd':
			accum *= 24;
			/* fall through */
		case 'h':
			accum *= 60;
			/* fall through */
		case 'm':
			accum *= 60;
			/* fall through */
		case 's':
			total += accum;
			accum = 0;
			break;
		default:
			return -1;
		}
		if (!*p)
			break;
	}
	if (secs_r)
		*secs_r = neg ? -total : total;
	return 0;
}

/* Is word one of the space-separated choices? */
static bool is_choice(const char *choices, const char *word, size_t len)
{
	const char *p = choices;
	while (*p) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == len && !strncmp(p, word, len))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

/* Cyrus normalises these for enums before matching. */
static const char *normalise_enum(const char *v)
{
	if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "t") ||
	    !strcmp(v, "true"))
		return "on";
	if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "f") ||
	    !strcmp(v, "false"))
		return "off";
	return v;
}

static int check_value(const struct config_option *o, const char *v,
		       const char *file, int line, struct error *err)
{
	char *end;
	long l;
	switch (o->type) {
	case OPT_STRING:
		return 0;
	case OPT_INT:
		errno = 0;
		l = strtol(v, &end, 0);
		(void)l;
		if (*end || errno)
			return error_set(err, ERR_CONFIG, "%s:%d: non-integer "
					 "value for %s", file, line, o->name);
		return 0;
	case OPT_SWITCH:
		if (config_parse_switch(v) < 0)
			return error_set(err, ERR_CONFIG, "%s:%d: non-switch "
					 "value for %s", file, line, o->name);
		return 0;
	case OPT_DURATION:
		if (config_parse_duration(v, 's', NULL) < 0)
			return error_set(err, ERR_CONFIG, "%s:%d: invalid "
					 "duration '%s' for %s", file, line, v,
					 o->name);
		return 0;
	case OPT_ENUM:
	case OPT_STRINGLIST: {
		const char *n = o->type == OPT_ENUM ? normalise_enum(v) : v;
		if (!is_choice(o->choices, n, strlen(n)))
			return error_set(err, ERR_CONFIG, "%s:%d: invalid "
					 "value '%s' for %s", file, line, v,
					 o->name);
		return 0;
	}
	case OPT_BITFIELD: {
		const char *p = v;
		while (*p) {
			size_t n = strcspn(p, " \t");
			if (n && !is_choice(o->choices, p, n))
				return error_set(err, ERR_CONFIG, "%s:%d: "
						 "invalid value '%.*s' for %s",
						 file, line, (int)n, p,
						 o->name);
			p += n;
			p += strspn(p, " \t");
		}
		return 0;
	}
	}
	return 0;
}

static void add_entry(struct config *cfg, const char *key, const char *value,
		      int line, bool service_specific)
{
	if (cfg->nentries == cfg->alloc) {
		cfg->alloc = cfg->alloc ? cfg->alloc * 2 : 32;
		cfg->entries = xrealloc(cfg->entries,
					cfg->alloc * sizeof(*cfg->entries));
	}
	struct config_entry *e = &cfg->entries[cfg->nentries++];
	e->key = xstrdup(key);
	e->value = xstrdup(value);
	e->line = line;
	e->service_specific = service_specific;
}

static long find_entry(const struct config *cfg, const char *key)
{
	for (size_t i = 0; i < cfg->nentries; i++)
		if (!strcmp(cfg->entries[i].key, key))
			return (long)i;
	return -1;
}

static int read_file(struct config *cfg, const char *filename, int depth,
		     struct error *err);

/* One logical line: "key: value" (key already lower-cased by caller). */
static int parse_line(struct config *cfg, char *p, const char *file, int line,
		      int depth, struct error *err)
{
	char *key = p;
	if (*p == '@')
		p++;
	while (*p && (isalnum((unsigned char)*p) || *p == '-' || *p == '_')) {
		*p = (char)tolower((unsigned char)*p);
		p++;
	}
	if (*p != ':')
		return error_set(err, ERR_CONFIG, "%s:%d: invalid option name "
				 "(a line must read 'key: value')", file, line);
	*p++ = '\0';
	while (*p && isspace((unsigned char)*p))
		p++;
	char *value = p;
	char *q = value + strlen(value);
	while (q > value && isspace((unsigned char)q[-1]))
		*--q = '\0';
	if (!*value)
		return error_set(err, ERR_CONFIG, "%s:%d: empty value for '%s'",
				 file, line, key);

	if (key[0] == '@') {
		if (strcmp(key, "@include"))
			return error_set(err, ERR_CONFIG, "%s:%d: invalid "
					 "directive '%s'", file, line, key);
		return read_file(cfg, value, depth + 1, err);
	}

	/* "ident_key" applies to this program only and wins over "key". */
	bool service_specific = false;
	size_t idlen = cfg->ident ? strlen(cfg->ident) : 0;
	if (idlen && !strncmp(key, cfg->ident, idlen) && key[idlen] == '_' &&
	    option_index(key + idlen + 1) >= 0) {
		key += idlen + 1;
		service_specific = true;
	}
	const char *newname = renamed_to(key);
	if (newname)
		key = (char *)newname;

	int opt = option_index(key);
	if (opt >= 0) {
		long prev = cfg->known[opt];
		if (prev >= 0) {
			bool prev_ss = cfg->entries[prev].service_specific;
			if (prev_ss == service_specific)
				return error_set(err, ERR_CONFIG,
						 "%s:%d: option '%s' was "
						 "specified twice (first on "
						 "line %d)", file, line, key,
						 cfg->entries[prev].line);
			if (prev_ss)
				return 0; /* the specific form stays */
		}
		if (check_value(&config_options[opt], value, file, line, err))
			return -1;
		add_entry(cfg, key, value, line, service_specific);
		cfg->known[opt] = (long)cfg->nentries - 1;
		return 0;
	}
	long prev = find_entry(cfg, key);
	if (prev >= 0)
		return error_set(err, ERR_CONFIG, "%s:%d: option '%s' was "
				 "specified twice (first on line %d)", file,
				 line, key, cfg->entries[prev].line);
	add_entry(cfg, key, value, line, service_specific);
	return 0;
}

static int read_file(struct config *cfg, const char *filename, int depth,
		     struct error *err)
{
	struct buf line = BUF_INIT;
	char *raw = NULL;
	size_t rawcap = 0;
	int lineno = 0, r = 0;

	if (depth > 16)
		return error_set(err, ERR_CONFIG, "%s: @include nested too "
				 "deeply", filename);
	for (size_t i = 0; i < cfg->nincluded; i++)
		if (!strcmp(cfg->included[i], filename))
			return error_set(err, ERR_CONFIG, "configuration file "
					 "'%s' included twice", filename);
	cfg->included = xrealloc(cfg->included,
				 (cfg->nincluded + 1) * sizeof(char *));
	cfg->included[cfg->nincluded++] = xstrdup(filename);

	FILE *f = fopen(filename, "r");
	if (!f)
		return error_sys(err, ERR_CONFIG, errno, "cannot read "
				 "configuration file '%s'", filename);
	for (;;) {
		ssize_t n = getline(&raw, &rawcap, f);
		if (n < 0)
			break;
		lineno++;
		if (memchr(raw, '\0', (size_t)n)) {
			r = error_set(err, ERR_CONFIG, "%s:%d: NUL byte in "
				      "configuration file", filename, lineno);
			goto out;
		}
		bool nl = n > 0 && raw[n - 1] == '\n';
		if (nl)
			raw[--n] = '\0';
		/* A backslash at the end joins the next line (as Cyrus). */
		if (nl && n > 0 && raw[n - 1] == '\\') {
			buf_add(&line, raw, (size_t)n - 1);
			continue;
		}
		buf_add(&line, raw, (size_t)n);
		char *p = line.s;
		while (*p && isspace((unsigned char)*p))
			p++;
		if (*p && *p != '#') {
			r = parse_line(cfg, p, filename, lineno, depth, err);
			if (r)
				goto out;
		}
		buf_reset(&line);
	}
	if (ferror(f))
		r = error_sys(err, ERR_CONFIG, errno, "cannot read '%s'",
			      filename);
out:
	fclose(f);
	free(raw);
	buf_release(&line);
	return r;
}

int config_load(const char *filename, const char *ident,
		struct config **cfg_r, struct error *err)
{
	struct config *cfg = xzmalloc(sizeof(*cfg));
	cfg->filename = xstrdup(filename ? filename : CONFIG_DEFAULT_FILE);
	cfg->ident = ident ? xstrdup(ident) : NULL;
	for (size_t i = 0; i < NOPTIONS; i++)
		cfg->known[i] = -1;
	*cfg_r = NULL;

	if (read_file(cfg, cfg->filename, 0, err))
		goto fail;
	const char *confdir = config_getstring(cfg, "configdirectory");
	if (!confdir) {
		error_set(err, ERR_CONFIG, "%s: configdirectory option not "
			  "specified", cfg->filename);
		goto fail;
	}
	const char *defpart = config_getstring(cfg, "defaultpartition");
	for (const char *p = defpart; p && *p; p++) {
		if (!isalnum((unsigned char)*p)) {
			error_set(err, ERR_CONFIG, "%s: defaultpartition '%s' "
				  "contains a non-alphanumeric character",
				  cfg->filename, defpart);
			goto fail;
		}
	}
	/* Expand "{configdirectory}" at the start of string values. */
	for (size_t i = 0; i < NOPTIONS; i++) {
		if (config_options[i].type != OPT_STRING)
			continue;
		const char *v = cfg->known[i] >= 0
					? cfg->entries[cfg->known[i]].value
					: config_options[i].def;
		if (v && !strncasecmp(v, "{configdirectory}", 17))
			cfg->expanded[i] = xasprintf("%s%s", confdir, v + 17);
	}
	*cfg_r = cfg;
	return 0;
fail:
	config_free(&cfg);
	return -1;
}

void config_free(struct config **cfgp)
{
	struct config *cfg = *cfgp;
	if (!cfg)
		return;
	*cfgp = NULL;
	for (size_t i = 0; i < cfg->nentries; i++) {
		free(cfg->entries[i].key);
		free(cfg->entries[i].value);
	}
	for (size_t i = 0; i < NOPTIONS; i++)
		free(cfg->expanded[i]);
	for (size_t i = 0; i < cfg->nincluded; i++)
		free(cfg->included[i]);
	free(cfg->included);
	free(cfg->entries);
	free(cfg->filename);
	free(cfg->ident);
	free(cfg);
}

const char *config_filename(const struct config *cfg)
{
	return cfg->filename;
}

static int must_index(const char *name, enum config_type t1,
		      enum config_type t2)
{
	int i = option_index(name);
	if (i < 0)
		BUG("imapd.conf option '%s' is not in config_options.h", name);
	if (config_options[i].type != t1 && config_options[i].type != t2)
		BUG("imapd.conf option '%s' read with the wrong type", name);
	return i;
}

static const char *value_of(const struct config *cfg, int i)
{
	if (cfg->expanded[i])
		return cfg->expanded[i];
	if (cfg->known[i] >= 0)
		return cfg->entries[cfg->known[i]].value;
	return config_options[i].def;
}

const char *config_getstring(const struct config *cfg, const char *name)
{
	return value_of(cfg, must_index(name, OPT_STRING, OPT_STRING));
}

long config_getint(const struct config *cfg, const char *name)
{
	const char *v = value_of(cfg, must_index(name, OPT_INT, OPT_INT));
	return v ? strtol(v, NULL, 0) : 0;
}

bool config_getswitch(const struct config *cfg, const char *name)
{
	const char *v = value_of(cfg, must_index(name, OPT_SWITCH, OPT_SWITCH));
	return v && config_parse_switch(v) == 1;
}

const char *config_getenum(const struct config *cfg, const char *name)
{
	const char *v = value_of(cfg, must_index(name, OPT_ENUM,
						 OPT_STRINGLIST));
	return config_options[option_index(name)].type == OPT_ENUM
		       ? normalise_enum(v)
		       : v;
}

long config_getduration(const struct config *cfg, const char *name,
			int defunit)
{
	const char *v = value_of(cfg, must_index(name, OPT_DURATION,
						 OPT_DURATION));
	long secs = 0;
	if (v)
		config_parse_duration(v, defunit, &secs);
	return secs;
}

const char *config_getraw(const struct config *cfg, const char *key)
{
	long i = find_entry(cfg, key);
	return i >= 0 ? cfg->entries[i].value : NULL;
}

bool config_isset(const struct config *cfg, const char *name)
{
	int i = option_index(name);
	return i >= 0 ? cfg->known[i] >= 0 : find_entry(cfg, name) >= 0;
}

static const char *prefixed(const struct config *cfg, const char *prefix,
			    const char *name)
{
	size_t plen = strlen(prefix);
	for (size_t i = 0; i < cfg->nentries; i++) {
		const char *k = cfg->entries[i].key;
		if (!strncmp(k, prefix, plen) && !strcasecmp(k + plen, name))
			return cfg->entries[i].value;
	}
	return NULL;
}

const char *config_partitiondir(const struct config *cfg, const char *name)
{
	return prefixed(cfg, "partition-", name);
}

const char *config_metapartitiondir(const struct config *cfg, const char *name)
{
	return prefixed(cfg, "metapartition-", name);
}

const char *config_archivepartitiondir(const struct config *cfg,
				       const char *name)
{
	return prefixed(cfg, "archivepartition-", name);
}

const char *config_defpartition(const struct config *cfg)
{
	const char *d = config_getstring(cfg, "defaultpartition");
	if (d)
		return d;
	for (size_t i = 0; i < cfg->nentries; i++)
		if (!strncmp(cfg->entries[i].key, "partition-", 10))
			return cfg->entries[i].key + 10;
	return NULL;
}

int config_foreach_partition(const struct config *cfg,
			     int (*cb)(void *rock, const char *name,
				       const char *dir),
			     void *rock)
{
	for (size_t i = 0; i < cfg->nentries; i++) {
		const struct config_entry *e = &cfg->entries[i];
		if (strncmp(e->key, "partition-", 10) || !e->key[10])
			continue;
		int r = cb(rock, e->key + 10, e->value);
		if (r)
			return r;
	}
	return 0;
}

/* Default file names under configdirectory (lib/cyrusdb defaults). */
static const struct {
	const char *db, *file;
} db_files[] = {
	{ "annotation", "annotations.db" },
	{ "backup", "backups.db" },
	{ "duplicate", "deliver.db" },
	{ "mboxlist", "mailboxes.db" },
	{ "ptscache", "ptclient/ptscache.db" },
	{ "quota", "quotas.db" },
	{ "statuscache", "statuscache.db" },
	{ "tls_sessions", "tls_sessions.db" },
	{ "userdeny", "user_deny.db" },
	{ "zoneinfo", "zoneinfo.db" },
};

static const char *db_file(const char *db)
{
	for (size_t i = 0; i < ARRAY_SIZE(db_files); i++)
		if (!strcmp(db_files[i].db, db))
			return db_files[i].file;
	BUG("unknown database '%s'", db);
}

const char *config_db_backend(const struct config *cfg, const char *db)
{
	char opt[64];
	db_file(db);
	snprintf(opt, sizeof(opt), "%s_db", db);
	return config_getenum(cfg, opt);
}

char *config_db_path(const struct config *cfg, const char *db)
{
	char opt[64];
	const char *file = db_file(db);
	snprintf(opt, sizeof(opt), "%s_db_path", db);
	const char *path = config_getstring(cfg, opt);
	if (path)
		return xstrdup(path);
	return xasprintf("%s/%s", config_getstring(cfg, "configdirectory"),
			 file);
}

void config_cyrusdb_env(const struct config *cfg, struct cyrusdb_env *env)
{
	memset(env, 0, sizeof(*env));
	env->configdir = config_getstring(cfg, "configdirectory");
	env->virtdomains = strcmp(config_getenum(cfg, "virtdomains"), "off");
	env->fulldirhash = config_getswitch(cfg, "fulldirhash");
	env->skiplist_always_checkpoint =
		config_getswitch(cfg, "skiplist_always_checkpoint");
	env->nosync = false;
}
