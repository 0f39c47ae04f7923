/* mailbox_index.c: cyrus.index encode/decode, CRCs, counters (mailbox.h). */
#include "compat.h"
#include "mailbox.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "error.h"
#include "xmalloc.h"

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint32_t crc(const void *p, size_t len)
{
	return (uint32_t)crc32(0, (const Bytef *)p, (uInt)len);
}

size_t mailbox_index_header_size(uint32_t v)
{
	switch (v) {
	case 6: case 7: return 76;
	case 8: return 92;
	case 9: case 10: return 96;
	case 12: case 13: return 128;
	case 14: case 15: case 16: case 17: return 160;
	default: return 0;
	}
}

size_t mailbox_index_record_size(uint32_t v)
{
	switch (v) {
	case 6: return 60;
	case 7: return 72;
	case 8: case 9: return 80;
	case 10: return 88;
	case 12: return 96;
	case 13: case 14: case 15: return 104;
	case 16: case 17: return 112;
	default: return 0;
	}
}

int mailbox_index_header_decode(const unsigned char *b, size_t len,
				struct mailbox_index_header *i,
				bool *crcbad_r, struct error *err)
{
	if (crcbad_r)
		*crcbad_r = false;
	memset(i, 0, sizeof(*i));
	if (len < 12)
		return error_set(err, ERR_DATA, "bad format: %zu bytes", len);
	i->generation_no = get32(b + 0);
	i->format = get32(b + 4);
	i->minor_version = get32(b + 8);
	size_t hl = mailbox_index_header_size(i->minor_version);
	if (!hl)
		return error_set(err, ERR_DATA,
				 "bad format: unknown minor version %u",
				 i->minor_version);
	if (len < hl)
		return error_set(err, ERR_DATA,
				 "bad format: header truncated at %zu bytes",
				 len);
	uint32_t v = i->minor_version;
	i->start_offset = get32(b + 12);
	i->record_size = get32(b + 16);
	i->num_records = get32(b + 20);
	i->last_appenddate = get32(b + 24);
	i->last_uid = get32(b + 28);
	i->quota_mailbox_used = get64(b + 32);
	i->pop3_last_login = get32(b + 40);
	i->uidvalidity = get32(b + 44);
	i->deleted = get32(b + 48);
	i->answered = get32(b + 52);
	i->flagged = get32(b + 56);
	i->options = get32(b + 60);
	i->leaked_cache_records = get32(b + 64);
	if (v < 8)
		goto done;
	i->highestmodseq = get64(b + 68);
	if (v < 12)
		goto done;
	i->deletedmodseq = get64(b + 76);
	i->exists = get32(b + 84);
	i->first_expunged = get32(b + 88);
	i->last_repack_time = get32(b + 92);
	i->header_file_crc = get32(b + 96);
	i->sync_crc = get32(b + 100);
	i->recentuid = get32(b + 104);
	i->recenttime = get32(b + 108);
	if (v >= 13) {
		i->pop3_show_after = get32(b + 112);
		i->quota_annot_used = get32(b + 116);
		i->sync_crc_annot = get32(b + 120);
	}
	if (v >= 14)
		i->unseen = get32(b + 124);
	if (v >= 16)
		i->createdmodseq = get64(b + 128);
	if (v >= 17)
		i->changes_epoch = get32(b + 136);
	i->header_crc = get32(b + hl - 4);
	if (i->header_crc != crc(b, hl - 4)) {
		if (crcbad_r)
			*crcbad_r = true;
		return error_set(err, ERR_DATA,
				 "checksum mismatch in index header");
	}
done:
	if (!i->exists)
		i->options |= MAILBOX_OPT_POP3_NEW_UIDL;
	if (!i->highestmodseq)
		i->highestmodseq = 1;
	if (v < 12) {
		i->deletedmodseq = i->highestmodseq;
		i->exists = i->num_records;
	}
	if (v < 17)
		i->changes_epoch = i->last_repack_time ?
			i->last_repack_time : (uint32_t)time(NULL);
	return 0;
}

size_t mailbox_index_header_encode(const struct mailbox_index_header *i,
				   unsigned char *b)
{
	uint32_t v = i->minor_version;
	uint32_t options = i->options & MAILBOX_OPT_VALID;
	size_t hl = mailbox_index_header_size(v);
	if (!hl)
		BUG("index header version %u", v);
	memset(b, 0, MAILBOX_INDEX_HEADER_SIZE);
	put32(b + 0, i->generation_no);
	put32(b + 4, i->format);
	put32(b + 8, v);
	put32(b + 12, i->start_offset);
	put32(b + 16, i->record_size);
	put32(b + 20, i->num_records);
	put32(b + 24, i->last_appenddate);
	put32(b + 28, i->last_uid);
	put64(b + 32, i->quota_mailbox_used);
	put32(b + 40, i->pop3_last_login);
	put32(b + 44, i->uidvalidity);
	put32(b + 48, i->deleted);
	put32(b + 52, i->answered);
	put32(b + 56, i->flagged);
	if (v < 8) {
		put32(b + 60, options & 1);
		return hl;
	}
	put32(b + 60, options);
	put32(b + 64, i->leaked_cache_records);
	put64(b + 68, i->highestmodseq);
	if (v < 12)
		return hl;
	put64(b + 76, i->deletedmodseq);
	put32(b + 84, i->exists);
	put32(b + 88, i->first_expunged);
	put32(b + 92, i->last_repack_time);
	put32(b + 96, i->header_file_crc);
	put32(b + 100, i->sync_crc);
	put32(b + 104, i->recentuid);
	put32(b + 108, i->recenttime);
	if (v > 12) {
		put32(b + 112, i->pop3_show_after);
		put32(b + 116, i->quota_annot_used);
		put32(b + 120, i->sync_crc_annot);
	}
	if (v > 13)
		put32(b + 124, i->unseen);
	if (v > 15)
		put64(b + 128, i->createdmodseq);
	if (v > 16)
		put32(b + 136, i->changes_epoch);
	put32(b + hl - 4, crc(b, hl - 4));
	return hl;
}

void mailbox_record_decode(const unsigned char *b, uint32_t v,
			   struct mailbox_record *r)
{
	memset(r, 0, sizeof(*r));
	r->crc_ok = true;
	r->uid = get32(b + 0);
	r->internaldate = get32(b + 4);
	r->sentdate = get32(b + 8);
	r->size = get32(b + 12);
	r->header_size = get32(b + 16);
	r->gmtime = get32(b + 20);
	uint64_t off = get32(b + 24);
	r->last_updated = get32(b + 28);
	uint32_t sf = get32(b + 32);
	r->system_flags = sf & 0xffff;
	r->internal_flags = sf & 0xffff0000u;
	for (int n = 0; n < 4; n++)
		r->user_flags[n] = get32(b + 36 + 4 * n);
	uint64_t cv = get32(b + 56);
	r->cache_version = (uint32_t)(cv & 0xffff);
	r->cache_offset = off | ((cv & 0xffff0000u) << 16);
	if (v < 8)
		return;
	if (v < 10) {
		r->modseq = get64(b + 72);
		return;
	}
	memcpy(r->guid, b + 60, MAILBOX_GUID_SIZE);
	r->modseq = get64(b + 80);
	if (v < 12)
		return;
	if (v < 13) {
		r->cache_crc = get32(b + 88);
		r->record_crc = get32(b + 92);
		r->crc_ok = r->record_crc == crc(b, 92);
		return;
	}
	r->cid = get64(b + 88);
	if (v > 14)
		r->savedate = get32(b + 52);
	if (v < 16) {
		r->cache_crc = get32(b + 96);
		r->record_crc = get32(b + 100);
		r->crc_ok = r->record_crc == crc(b, 100);
		return;
	}
	r->createdmodseq = get64(b + 96);
	r->cache_crc = get32(b + 104);
	r->record_crc = get32(b + 108);
	r->crc_ok = r->record_crc == crc(b, 108);
}

size_t mailbox_record_encode(const struct mailbox_record *r, uint32_t v,
			     unsigned char *b)
{
	size_t rl = mailbox_index_record_size(v);
	if (!rl)
		BUG("index record version %u", v);
	memset(b, 0, MAILBOX_INDEX_RECORD_SIZE);
	uint32_t off = (uint32_t)(r->cache_offset & 0xffffffffu);
	uint32_t cv = (r->cache_version & 0xffff) |
		      (uint32_t)((r->cache_offset & 0xffff00000000ull) >> 16);
	put32(b + 0, r->uid);
	put32(b + 4, r->internaldate);
	put32(b + 8, r->sentdate);
	put32(b + 12, r->size);
	put32(b + 16, r->header_size);
	put32(b + 20, v >= 12 ? r->gmtime : r->header_size);
	put32(b + 24, off);
	put32(b + 28, r->last_updated);
	put32(b + 32, (r->system_flags & 0xffff) |
			      (r->internal_flags & 0xffff0000u));
	for (int n = 0; n < 4; n++)
		put32(b + 36 + 4 * n, r->user_flags[n]);
	put32(b + 52, v > 14 ? r->savedate : 0);
	put32(b + 56, cv);
	if (v < 8)
		return rl;
	if (v < 10) {
		put64(b + 72, r->modseq);
		return rl;
	}
	memcpy(b + 60, r->guid, MAILBOX_GUID_SIZE);
	put64(b + 80, r->modseq);
	if (v < 12)
		return rl;
	if (v < 13) {
		put32(b + 88, r->cache_crc);
		put32(b + 92, crc(b, 92));
		return rl;
	}
	put64(b + 88, r->cid);
	if (v < 16) {
		put32(b + 96, r->cache_crc);
		put32(b + 100, crc(b, 100));
		return rl;
	}
	put64(b + 96, r->createdmodseq);
	put32(b + 104, r->cache_crc);
	put32(b + 108, crc(b, 108));
	return rl;
}

void mailbox_guid_hex(const unsigned char *guid, char out[41])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < MAILBOX_GUID_SIZE; i++) {
		out[2 * i] = hex[guid[i] >> 4];
		out[2 * i + 1] = hex[guid[i] & 15];
	}
	out[40] = '\0';
}

static uint32_t crc_cstring(const char *s)
{
	return crc(s, strlen(s));
}

uint32_t mailbox_record_sync_crc(const struct mailbox_record *r,
				 const struct mailbox_header *h)
{
	uint32_t flagcrc = 0;
	char buf[4096];
	char hex[41];

	if (r->internal_flags & MAILBOX_FLAG_EXPUNGED)
		return 0;
	if (r->system_flags & MAILBOX_FLAG_DELETED)
		flagcrc ^= crc_cstring("\\deleted");
	if (r->system_flags & MAILBOX_FLAG_ANSWERED)
		flagcrc ^= crc_cstring("\\answered");
	if (r->system_flags & MAILBOX_FLAG_FLAGGED)
		flagcrc ^= crc_cstring("\\flagged");
	if (r->system_flags & MAILBOX_FLAG_DRAFT)
		flagcrc ^= crc_cstring("\\draft");
	if (r->system_flags & MAILBOX_FLAG_SEEN)
		flagcrc ^= crc_cstring("\\seen");
	for (int f = 0; h && f < MAILBOX_MAX_USER_FLAGS; f++) {
		if (!h->flagname[f])
			continue;
		if (!(r->user_flags[f / 32] & (1u << (f & 31))))
			continue;
		size_t n = strlen(h->flagname[f]);
		if (n >= sizeof(buf))
			n = sizeof(buf) - 1;
		for (size_t k = 0; k < n; k++)
			buf[k] = (char)tolower((unsigned char)h->flagname[f][k]);
		buf[n] = '\0';
		flagcrc ^= crc_cstring(buf);
	}
	mailbox_guid_hex(r->guid, hex);
	snprintf(buf, sizeof(buf), "%u %llu %lld (%u) %lld %s", r->uid,
		 (unsigned long long)r->modseq, (long long)r->last_updated,
		 flagcrc, (long long)r->internaldate, hex);
	return crc_cstring(buf);
}

void mailbox_index_recount(struct mailbox_index_header *ih,
			   const struct mailbox_record *recs, size_t n,
			   const struct mailbox_header *h)
{
	ih->exists = ih->answered = ih->flagged = ih->deleted = 0;
	ih->unseen = 0;
	ih->quota_mailbox_used = 0;
	ih->sync_crc = 0;
	ih->num_records = (uint32_t)n;
	for (size_t k = 0; k < n; k++) {
		const struct mailbox_record *r = &recs[k];
		if (r->uid > ih->last_uid)
			ih->last_uid = r->uid;
		if (r->modseq > ih->highestmodseq)
			ih->highestmodseq = r->modseq;
		if (r->internal_flags & MAILBOX_FLAG_EXPUNGED)
			continue;
		ih->exists++;
		ih->quota_mailbox_used += r->size;
		if (r->system_flags & MAILBOX_FLAG_ANSWERED)
			ih->answered++;
		if (r->system_flags & MAILBOX_FLAG_FLAGGED)
			ih->flagged++;
		if (r->system_flags & MAILBOX_FLAG_DELETED)
			ih->deleted++;
		if (!(r->system_flags & MAILBOX_FLAG_SEEN))
			ih->unseen++;
		ih->sync_crc ^= mailbox_record_sync_crc(r, h);
	}
}

void mailbox_index_header_new(struct mailbox_index_header *ih,
			      uint32_t uidvalidity, uint64_t highestmodseq,
			      uint64_t createdmodseq, uint32_t options,
			      uint32_t now)
{
	memset(ih, 0, sizeof(*ih));
	ih->minor_version = MAILBOX_MINOR_VERSION;
	ih->start_offset = MAILBOX_INDEX_HEADER_SIZE;
	ih->record_size = MAILBOX_INDEX_RECORD_SIZE;
	ih->options = options;
	ih->uidvalidity = uidvalidity;
	if (!highestmodseq)
		highestmodseq = 1;
	if (!createdmodseq || createdmodseq > highestmodseq)
		createdmodseq = highestmodseq;
	ih->highestmodseq = highestmodseq;
	ih->createdmodseq = createdmodseq;
	ih->changes_epoch = now;
	ih->sync_crc = 0;
	ih->sync_crc_annot = MAILBOX_CRC_INIT_ANNOT;
}

void mailbox_index_release(struct mailbox_index *idx)
{
	free(idx->recs);
	memset(idx, 0, sizeof(*idx));
}

int mailbox_index_parse(const unsigned char *data, size_t len,
			struct mailbox_index *idx, bool *crcbad_r,
			struct error *err)
{
	mailbox_index_release(idx);
	if (mailbox_index_header_decode(data, len, &idx->h, crcbad_r, err) < 0)
		return -1;
	const struct mailbox_index_header *h = &idx->h;
	size_t need = mailbox_index_record_size(h->minor_version);
	if (h->start_offset < mailbox_index_header_size(h->minor_version) ||
	    h->record_size < need)
		return error_set(err, ERR_DATA,
				 "bad format: start offset %u, record size %u",
				 h->start_offset, h->record_size);
	if (len < h->start_offset ||
	    (len - h->start_offset) / h->record_size < h->num_records)
		return error_set(err, ERR_DATA,
				 "truncated: %u records need %llu bytes, "
				 "file has %zu", h->num_records,
				 (unsigned long long)h->start_offset +
					 (unsigned long long)h->num_records *
						 h->record_size, len);
	idx->recs = xcalloc(h->num_records ? h->num_records : 1,
			    sizeof(*idx->recs));
	idx->nrecs = h->num_records;
	for (size_t k = 0; k < idx->nrecs; k++)
		mailbox_record_decode(data + h->start_offset +
					      k * h->record_size,
				      h->minor_version, &idx->recs[k]);
	return 0;
}

int mailbox_index_read_fd(int fd, struct mailbox_index *idx, bool *crcbad_r,
			  struct error *err)
{
	struct buf data = BUF_INIT;
	int r;
	off_t pos = 0;
	for (;;) {
		buf_grow(&data, 65536);
		ssize_t n = pread(fd, data.s + data.len,
				  data.alloc - data.len - 1, pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			buf_release(&data);
			return error_sys(err, ERR_IO, errno,
					 "cannot read cyrus.index");
		}
		if (n == 0)
			break;
		pos += n;
		buf_setlen(&data, data.len + (size_t)n);
	}
	r = mailbox_index_parse((const unsigned char *)data.s, data.len, idx,
				crcbad_r, err);
	buf_release(&data);
	return r;
}

int mailbox_index_read(const char *path, struct mailbox_index *idx,
		       bool *crcbad_r, struct error *err)
{
	if (crcbad_r)
		*crcbad_r = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_sys(err, errno == ENOENT ? ERR_NOINPUT : ERR_IO,
				 errno, "cannot open '%s'", path);
	int r = mailbox_index_read_fd(fd, idx, crcbad_r, err);
	close(fd);
	return r;
}

void mailbox_index_format(const struct mailbox_index_header *h,
			  const struct mailbox_record *recs, size_t n,
			  struct buf *out)
{
	struct mailbox_index_header ih = *h;
	unsigned char hb[MAILBOX_INDEX_HEADER_SIZE];
	unsigned char rb[MAILBOX_INDEX_RECORD_SIZE];

	ih.start_offset = (uint32_t)mailbox_index_header_size(ih.minor_version);
	ih.record_size = (uint32_t)mailbox_index_record_size(ih.minor_version);
	ih.num_records = (uint32_t)n;
	size_t hl = mailbox_index_header_encode(&ih, hb);
	buf_grow(out, hl + n * ih.record_size);
	buf_add(out, hb, hl);
	for (size_t k = 0; k < n; k++) {
		size_t rl = mailbox_record_encode(&recs[k], ih.minor_version, rb);
		buf_add(out, rb, rl);
	}
}

int mailbox_index_write(const char *path, const struct mailbox_index_header *h,
			const struct mailbox_record *recs, size_t n,
			struct error *err)
{
	struct buf data = BUF_INIT;
	mailbox_index_format(h, recs, n, &data);
	int r = mailbox_write_file(path, data.s, data.len, err);
	buf_release(&data);
	return r;
}

int mailbox_cache_create(const char *path, uint32_t generation,
			 struct error *err)
{
	unsigned char b[4];
	put32(b, generation);
	return mailbox_write_file(path, b, sizeof(b), err);
}

static uint32_t annot_crc(uint32_t uid, const char *entry, const char *value)
{
	char tmp[256];
	int n = snprintf(tmp, sizeof(tmp), "%u %s  %s", uid, entry, value);
	return (uint32_t)crc32(0, (const Bytef *)tmp, (uInt)n);
}

uint32_t mailbox_record_annot_crc(const struct mailbox_record *r,
				  uint32_t minor_version)
{
	char v[32];
	uint32_t crc = 0;

	if (r->internal_flags & MAILBOX_FLAG_EXPUNGED)
		return 0;
	if (r->cid && minor_version >= 13) {
		snprintf(v, sizeof(v), "%llx", (unsigned long long)r->cid);
		crc ^= annot_crc(r->uid, "/vendor/cmu/cyrus-imapd/thrid", v);
	}
	if (r->savedate && minor_version >= 15) {
		snprintf(v, sizeof(v), "%ld", (long)r->savedate);
		crc ^= annot_crc(r->uid, "/vendor/cmu/cyrus-imapd/savedate", v);
	}
	if (r->createdmodseq && minor_version >= 16) {
		snprintf(v, sizeof(v), "%llu",
			 (unsigned long long)r->createdmodseq);
		crc ^= annot_crc(r->uid,
				 "/vendor/cmu/cyrus-imapd/createdmodseq", v);
	}
	return crc;
}
