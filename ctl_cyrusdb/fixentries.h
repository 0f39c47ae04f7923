/*
 * fixentries.h: the mailboxes.db entry fixes of ctl_cyrusdb -r (without
 * -x), as Cyrus 3.6.1's process_mboxlist (imap/ctl_cyrusdb.c fixmbox,
 * imap/mboxlist.c mboxlist_set_racls):
 *   1. a reserved entry (type flag 'z') becomes a
 *      tombstone ('d'), or an intermediate ('i') when live mailboxes sit
 *      below it; a reserved DELETED.* entry goes; one whose uniqueid has an
 *      I record is left as it is (the real 3.6.1 leaves it: observed);
 *   2. a local mailbox entry without a uniqueid gets the one of its
 *      cyrus.header (a mailbox that cannot be read is skipped, as in
 *      Cyrus; a header without uniqueid too, where Cyrus makes one up);
 *   3. reverse-ACL records follow `reverseacls`: switched on, every live
 *      mailbox gets "A" U|S RS user RS dbname for each ACL user with l or
 *      r (not the owner, not an admin) plus the marker "AS" RS; switched
 *      off, the "AS" RS records go (the marker and the shared-mailbox
 *      records: Cyrus 3.6.1 leaves the "AU" ones, and so do we).
 * Not done: the upgrade of a pre-3.6 mailboxes.db (refused), legacy
 * specialuse (moved to annotations.db by Cyrus), the modseq counters
 * Cyrus bumps beside these changes.
 */
#ifndef CYRUS_CTL_CYRUSDB_FIXENTRIES_H
#define CYRUS_CTL_CYRUSDB_FIXENTRIES_H

struct config;
struct error;

/* Returns 0, or -1 with err filled. Changes are logged (syslog NOTICE). */
int fixentries_run(const struct config *cfg, const char *path,
		   struct error *err);

#endif
