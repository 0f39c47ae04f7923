/*
 * config_options.h: the imapd.conf options the toolkit reads, with the
 * types and defaults of Cyrus 3.6.1's lib/imapoptions. Included only by
 * lib/config.c. choices lists the legal values of enums, stringlists and
 * bitfields, separated by spaces.
 */
#ifndef CYRUS_LIB_CONFIG_OPTIONS_H
#define CYRUS_LIB_CONFIG_OPTIONS_H

enum config_type {
	OPT_STRING,
	OPT_INT,
	OPT_SWITCH,
	OPT_ENUM,
	OPT_STRINGLIST,
	OPT_BITFIELD,
	OPT_DURATION,
};

struct config_option {
	const char *name;
	enum config_type type;
	const char *def; /* NULL: no default */
	const char *choices;
};

#define DB_CHOICES_ALL "flat skiplist sql twoskip zeroskip"
#define DB_CHOICES_KV "skiplist twoskip zeroskip"
#define DB_CHOICES_SQL "skiplist sql twoskip zeroskip"

/* Sorted by name (binary search). */
static const struct config_option config_options[] = {
	{ "admins", OPT_STRING, "", NULL },
	{ "altnamespace", OPT_SWITCH, "1", NULL },
	{ "altprefix", OPT_STRING, "Alt Folders", NULL },
	{ "annotation_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_KV },
	{ "annotation_db_path", OPT_STRING, NULL, NULL },
	{ "archive_enabled", OPT_SWITCH, "0", NULL },
	{ "autocreate_inbox_folders", OPT_STRING, NULL, NULL },
	{ "autocreate_quota", OPT_INT, "-1", NULL },
	{ "backup_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_SQL },
	{ "backup_db_path", OPT_STRING, NULL, NULL },
	{ "configdirectory", OPT_STRING, NULL, NULL },
	{ "conversations", OPT_SWITCH, "0", NULL },
	{ "conversations_db", OPT_STRINGLIST, "skiplist", DB_CHOICES_SQL },
	{ "crossdomains", OPT_SWITCH, "0", NULL },
	{ "crossdomains_onlyother", OPT_SWITCH, "0", NULL },
	{ "cyrus_group", OPT_STRING, NULL, NULL },
	{ "cyrus_user", OPT_STRING, NULL, NULL },
	{ "debug", OPT_SWITCH, "0", NULL },
	{ "defaultacl", OPT_STRING, "anyone lrs", NULL },
	{ "defaultdomain", OPT_STRING, "internal", NULL },
	{ "defaultpartition", OPT_STRING, NULL, NULL },
	{ "delete_mode", OPT_ENUM, "delayed", "immediate delayed" },
	{ "deletedprefix", OPT_STRING, "DELETED", NULL },
	{ "duplicate_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_SQL },
	{ "duplicate_db_path", OPT_STRING, NULL, NULL },
	{ "expunge_mode", OPT_ENUM, "delayed", "immediate semidelayed delayed" },
	{ "fulldirhash", OPT_SWITCH, "0", NULL },
	{ "hashimapspool", OPT_SWITCH, "0", NULL },
	{ "idlesocket", OPT_STRING, "{configdirectory}/socket/idle", NULL },
	{ "improved_mboxlist_sort", OPT_SWITCH, "0", NULL },
	{ "lmtpsocket", OPT_STRING, "{configdirectory}/socket/lmtp", NULL },
	{ "mailbox_legacy_dirs", OPT_SWITCH, "0", NULL },
	{ "maxmessagesize", OPT_INT, "0", NULL },
	{ "mboxkey_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_KV },
	{ "mboxlist_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_ALL },
	{ "mboxlist_db_path", OPT_STRING, NULL, NULL },
	{ "mboxname_lockpath", OPT_STRING, NULL, NULL },
	{ "metapartition_files", OPT_BITFIELD, "",
	  "header index cache expunge squat annotations lock dav archivecache" },
	{ "notifysocket", OPT_STRING, "{configdirectory}/socket/notify", NULL },
	{ "proc_path", OPT_STRING, NULL, NULL },
	{ "ptscache_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_KV },
	{ "ptscache_db_path", OPT_STRING, NULL, NULL },
	{ "quota_db", OPT_STRINGLIST, "quotalegacy",
	  "flat skiplist sql quotalegacy twoskip zeroskip" },
	{ "quota_db_path", OPT_STRING, NULL, NULL },
	{ "quota_use_conversations", OPT_SWITCH, "0", NULL },
	{ "quotawarn", OPT_INT, "90", NULL },
	{ "reverseacls", OPT_SWITCH, "0", NULL },
	{ "search_indexed_db", OPT_STRINGLIST, "twoskip",
	  "flat skiplist twoskip zeroskip" },
	{ "seenstate_db", OPT_STRINGLIST, "twoskip",
	  "flat skiplist twoskip zeroskip" },
	{ "servername", OPT_STRING, NULL, NULL },
	{ "sharedprefix", OPT_STRING, "Shared Folders", NULL },
	{ "sieve_utf8fileinto", OPT_SWITCH, "0", NULL },
	{ "sievedir", OPT_STRING, "/usr/sieve", NULL },
	{ "sieveusehomedir", OPT_SWITCH, "0", NULL },
	{ "skiplist_always_checkpoint", OPT_SWITCH, "1", NULL },
	{ "skiplist_unsafe", OPT_SWITCH, "0", NULL },
	{ "sortcache_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_KV },
	{ "specialusealways", OPT_SWITCH, "1", NULL },
	{ "statuscache_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_SQL },
	{ "statuscache_db_path", OPT_STRING, NULL, NULL },
	{ "subscription_db", OPT_STRINGLIST, "flat",
	  "flat skiplist twoskip zeroskip" },
	{ "sync_log", OPT_SWITCH, "0", NULL },
	{ "syslog_facility", OPT_STRING, NULL, NULL },
	{ "syslog_prefix", OPT_STRING, NULL, NULL },
	{ "temp_path", OPT_STRING, "/tmp", NULL },
	{ "tls_client_ca_dir", OPT_STRING, NULL, NULL },
	{ "tls_client_ca_file", OPT_STRING, NULL, NULL },
	{ "tls_client_cert", OPT_STRING, NULL, NULL },
	{ "tls_client_key", OPT_STRING, NULL, NULL },
	{ "tls_session_timeout", OPT_DURATION, "24h", NULL },
	{ "tls_sessions_db", OPT_STRINGLIST, "twoskip", DB_CHOICES_SQL },
	{ "tls_sessions_db_path", OPT_STRING, NULL, NULL },
	{ "umask", OPT_STRING, "077", NULL },
	{ "unixhierarchysep", OPT_SWITCH, "1", NULL },
	{ "userdeny_db", OPT_STRINGLIST, "flat", DB_CHOICES_ALL },
	{ "userdeny_db_path", OPT_STRING, NULL, NULL },
	{ "userprefix", OPT_STRING, "Other Users", NULL },
	{ "virtdomains", OPT_ENUM, "off", "off userid on" },
	{ "zoneinfo_db", OPT_STRINGLIST, "twoskip",
	  "flat skiplist twoskip zeroskip" },
	{ "zoneinfo_db_path", OPT_STRING, NULL, NULL },
};

/* Deprecated names Cyrus still accepts, and the option they set. */
static const struct {
	const char *old, *new;
} config_renamed[] = {
	{ "autocreateinboxfolders", "autocreate_inbox_folders" },
	{ "autocreatequota", "autocreate_quota" },
	{ "tlscache_db", "tls_sessions_db" },
	{ "tlscache_db_path", "tls_sessions_db_path" },
};

#endif
