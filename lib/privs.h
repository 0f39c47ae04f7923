/*
 * privs.h: becoming the cyrus user. Run as root, the real tools switch to
 * cyrus_user (default "cyrus") and its group (cyrus_group, default the
 * user's primary group: "mail" on Debian) before they touch the store, so
 * that no file in the spool ends up owned by root. We do the same,
 * permanently (initgroups, setgid, setuid), and apply imapd.conf's umask.
 */
#ifndef CYRUS_LIB_PRIVS_H
#define CYRUS_LIB_PRIVS_H

struct config;
struct error;

/* No-op when not root. Fails with ERR_NOUSER if the user does not exist. */
int privs_become_cyrus(const struct config *cfg, struct error *err);
/* Sets the umask from imapd.conf's "umask" (octal, default 077). */
void privs_set_umask(const struct config *cfg);

#endif
