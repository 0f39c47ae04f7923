/*
 * twoskip_crc.c: CRC-32 with zlib's polynomial (reflected 0xEDB88320, the
 * checksum twoskip records and headers carry), tuned for the short buffers
 * twoskip checks: record heads of 24-264 bytes and keys plus values of a
 * few hundred. zlib's crc32_z() is built for long buffers and spends most
 * of a 48-byte call on setup; slicing by 16 bytes with sixteen 1 KiB tables
 * (Intel's "slicing-by-8", doubled) has no setup and runs at about one byte per
 * cycle from the first byte on. Long buffers (values of kilobytes) still
 * go to zlib, which is faster there.
 */
#include "compat.h"
#include "twoskip-private.h"

#include <endian.h>
#include <zlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* From this length on zlib's braided code is the faster one. */
#define CRC_LONG 2048

static uint32_t crc_table[16][256];

/* The tables, built once before main (no locking needed later). */
__attribute__((constructor)) static void crc_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int t = 1; t < 16; t++)
			crc_table[t][n] = (crc_table[t - 1][n] >> 8) ^
					  crc_table[0][crc_table[t - 1][n] &
						       0xff];
}

/* The table code on the inverted CRC c. */
static uint32_t crc_tables(uint32_t c, const unsigned char *p, uint64_t len)
{
	for (; len >= 16; len -= 16, p += 16) {
		uint64_t w, v;
		memcpy(&w, p, 8);
		memcpy(&v, p + 8, 8);
		w = le64toh(w) ^ c;
		v = le64toh(v);
		c = crc_table[15][w & 0xff] ^
		    crc_table[14][(w >> 8) & 0xff] ^
		    crc_table[13][(w >> 16) & 0xff] ^
		    crc_table[12][(w >> 24) & 0xff] ^
		    crc_table[11][(w >> 32) & 0xff] ^
		    crc_table[10][(w >> 40) & 0xff] ^
		    crc_table[9][(w >> 48) & 0xff] ^
		    crc_table[8][w >> 56] ^
		    crc_table[7][v & 0xff] ^
		    crc_table[6][(v >> 8) & 0xff] ^
		    crc_table[5][(v >> 16) & 0xff] ^
		    crc_table[4][(v >> 24) & 0xff] ^
		    crc_table[3][(v >> 32) & 0xff] ^
		    crc_table[2][(v >> 40) & 0xff] ^
		    crc_table[1][(v >> 48) & 0xff] ^
		    crc_table[0][v >> 56];
	}
	if (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w = le64toh(w) ^ c;
		c = crc_table[7][w & 0xff] ^
		    crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^
		    crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^
		    crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^
		    crc_table[0][w >> 56];
		len -= 8;
		p += 8;
	}
	while (len--)
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
/*
 * Carry-less multiplication folding ("Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ Instruction", Intel 2009), with the paper's
 * constants for the reflected polynomial, as the Linux kernel's
 * crc32-pclmul and Chromium's zlib use them: four 128-bit lanes folded
 * 64 bytes at a time, then into one lane, then a Barrett reduction.
 * c is the inverted CRC; len >= 64 and a multiple of 16.
 */
__attribute__((target("pclmul,sse4.1")))
static uint32_t crc_clmul(uint32_t c, const unsigned char *p, uint64_t len)
{
	const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
	const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
	const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
	const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
	const __m128i mask32 = _mm_setr_epi32(~0, 0, ~0, 0);
	__m128i x1, x2, x3, x4, x5, x6, x7, x8;

	x1 = _mm_loadu_si128((const __m128i *)(p + 0x00));
	x2 = _mm_loadu_si128((const __m128i *)(p + 0x10));
	x3 = _mm_loadu_si128((const __m128i *)(p + 0x20));
	x4 = _mm_loadu_si128((const __m128i *)(p + 0x30));
	x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
	p += 64;
	len -= 64;
	while (len >= 64) {
		x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
		x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
		x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
		x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
		x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
		x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
		x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
		x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
		x1 = _mm_xor_si128(_mm_xor_si128(x1, x5),
				   _mm_loadu_si128((const __m128i *)(p + 0x00)));
		x2 = _mm_xor_si128(_mm_xor_si128(x2, x6),
				   _mm_loadu_si128((const __m128i *)(p + 0x10)));
		x3 = _mm_xor_si128(_mm_xor_si128(x3, x7),
				   _mm_loadu_si128((const __m128i *)(p + 0x20)));
		x4 = _mm_xor_si128(_mm_xor_si128(x4, x8),
				   _mm_loadu_si128((const __m128i *)(p + 0x30)));
		p += 64;
		len -= 64;
	}
	/* four lanes into one */
	x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
	x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
	x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
	x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
	x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
	x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
	x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
	x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
	x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
	/* the remaining 16-byte blocks */
	for (; len >= 16; len -= 16, p += 16) {
		x2 = _mm_loadu_si128((const __m128i *)p);
		x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
		x1 = _mm_clmulepi64_si128(x1, k3k4, 0x11);
		x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
	}
	/* 128 bits to 64 */
	x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
	x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
	x2 = _mm_srli_si128(x1, 4);
	x1 = _mm_and_si128(x1, mask32);
	x1 = _mm_clmulepi64_si128(x1, k5k0, 0x00);
	x1 = _mm_xor_si128(x1, x2);
	/* Barrett reduction to 32 bits */
	x2 = _mm_and_si128(x1, mask32);
	x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
	x2 = _mm_and_si128(x2, mask32);
	x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
	x1 = _mm_xor_si128(x1, x2);
	return (uint32_t)_mm_extract_epi32(x1, 1);
}

__attribute__((constructor)) static void clmul_init(void)
{
	__builtin_cpu_init();
	twoskip_crc_clmul = __builtin_cpu_supports("pclmul") &&
			    __builtin_cpu_supports("sse4.1");
}
#endif

bool twoskip_crc_clmul;

/* Same results as zlib's crc32(crc, p, len), also for len 0 (crc back). */
uint32_t twoskip_crc(uint32_t crc, const void *buf, uint64_t len)
{
	const unsigned char *p = buf;
	uint32_t c = ~crc;

#if defined(__x86_64__)
	if (len >= 64 && twoskip_crc_clmul) {
		uint64_t n = len & ~(uint64_t)15;
		c = crc_clmul(c, p, n);
		p += n;
		len -= n;
	}
#endif
	if (len >= CRC_LONG)
		return crc32_z(crc, buf, len);
	return ~crc_tables(c, p, len);
}
