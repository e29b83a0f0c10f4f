// Packed low-bit weight x int8 activation matmul for CPU inference (BitNet-style).
//
//   out[m, n] = sum_k x[m, k] * W[n, k]   (int32, exact)
//
// W is never materialised: each thread decodes a tile of TILE_N weight rows from the packed bytes
// (byte j of a row holds columns j*cpb .. j*cpb+cpb-1, decoded through lut[byte, :]) into a small
// int8 buffer that stays in L1/L2, and multiplies it with every activation row, accumulating in
// int32. Parallel over tiles of output rows (at::parallel_for, so torch.set_num_threads applies).
//
// No -march flag: the .so must run on any x86-64 node. The SIMD code paths are compiled with
// per-function target attributes (#pragma GCC target) and picked at run time:
//   avx512vnni  decode with vpshufb, dot with vpdpbusd (u8 x s8): the weights are decoded biased,
//               w + 128 (u8, the lut is pre-biased), and 128 * sum(x_row) is subtracted once per
//               activation row (wrap-around int32 arithmetic, exact);
//   avx2        decode with vpshufb, dot with vpmaddwd on int16 (exact, no saturation);
//   scalar      plain C++, any CPU.
// Decoding: a generic path copies lut rows (any lut, any cpb in {1, 2, 4, 5, 8}); luts whose
// per-column value depends only on that column's bit field (1-bit, 2-bit, 4-bit codes, least or
// most significant field first) take a vectorised nibble-lookup path; an identity 8-bit lut is a
// plain copy. Activation rows are processed in blocks that stay in L2 (many tokens).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

// The SIMD paths need GCC's `#pragma GCC target`; other compilers (and other CPUs) get the
// scalar path only.
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__)
#define RB_X86 1
#include <immintrin.h>
#endif

namespace {

constexpr int64_t KALIGN = 64;  // decoded rows / activation rows are padded to this many columns
constexpr int TILE_N = 4;       // weight rows decoded together (one register block of outputs)

enum Isa : int { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512VNNI = 2 };
enum DecodeKind : int { DEC_GENERIC = 0, DEC_IDENTITY = 1, DEC_NIBBLE = 2 };

struct Decoder {
  int cpb = 1;
  int kind = DEC_GENERIC;
  alignas(64) int8_t lut8[256 * 8];  // lut rows padded to stride 8 (one 8-byte copy per byte)
  alignas(64) int8_t lut8b[256 * 8];  // the same + 128 (as u8): biased weights for vpdpbusd
  // DEC_NIBBLE tables: each column's field is moved into a nibble (hi: use byte >> 4), masked
  // (andp), and looked up in t16 with vpshufb.
  alignas(64) int8_t t16[16];
  alignas(64) int8_t t16b[16];
  alignas(64) uint8_t hi[64];
  alignas(64) uint8_t andp[64];
  alignas(64) uint8_t ctrl512[64];  // vpshufb control: repeat each source byte cpb times
  alignas(64) int64_t perm512[8];   // qword permutation bringing each lane its source bytes
  alignas(64) uint8_t ctrl512b[64];  // the same when every lane holds source bytes 0..15
  alignas(64) uint8_t ctrl256[32];
  uint64_t himask64 = 0;
};

void build_decoder(Decoder& d, const int8_t* lut, int cpb) {
  d.cpb = cpb;
  std::memset(d.lut8, 0, sizeof(d.lut8));
  for (int b = 0; b < 256; ++b)
    for (int i = 0; i < cpb; ++i) d.lut8[b * 8 + i] = lut[b * cpb + i];
  for (int i = 0; i < 256 * 8; ++i) d.lut8b[i] = static_cast<int8_t>(d.lut8[i] ^ 0x80);
  d.kind = DEC_GENERIC;
  if (cpb == 1) {
    bool ident = true;
    for (int b = 0; b < 256 && ident; ++b) ident = lut[b] == static_cast<int8_t>(static_cast<uint8_t>(b));
    if (ident) d.kind = DEC_IDENTITY;
    return;
  }
  if (cpb != 2 && cpb != 4 && cpb != 8) return;
  const int bits = 8 / cpb, fmask = (1 << bits) - 1, fpn = cpb / 2;  // fields per nibble
  for (int order = 0; order < 2; ++order) {  // 0: column i in bits [i*bits, ...), 1: reversed
    auto field = [&](int i) { return order == 0 ? i : cpb - 1 - i; };
    int8_t tab[16];
    for (int c = 0; c <= fmask; ++c) tab[c] = lut[(c << (bits * field(0))) * cpb + 0];
    bool ok = true;
    for (int b = 0; b < 256 && ok; ++b)
      for (int i = 0; i < cpb && ok; ++i)
        ok = lut[b * cpb + i] == tab[(b >> (bits * field(i))) & fmask];
    if (!ok) continue;
    d.kind = DEC_NIBBLE;
    for (int m = 0; m < 16; ++m) {
      int idx = 0;
      for (int f = 0; f < fpn; ++f) idx |= (m >> (bits * f)) & fmask;
      d.t16[m] = tab[idx];
      d.t16b[m] = static_cast<int8_t>(tab[idx] ^ 0x80);
    }
    d.himask64 = 0;
    for (int g = 0; g < 64; ++g) {
      const int f = field(g % cpb);
      d.hi[g] = f >= fpn ? 0xFF : 0;
      if (f >= fpn) d.himask64 |= uint64_t{1} << g;
      d.andp[g] = static_cast<uint8_t>(fmask << (bits * (f % fpn)));
      const int lane = g / 16, q = (16 * lane / cpb) / 8;
      d.ctrl512[g] = static_cast<uint8_t>(g / cpb - 8 * q);
      d.perm512[2 * lane] = q;
      d.perm512[2 * lane + 1] = q + 1;
      d.ctrl512b[g] = static_cast<uint8_t>(g / cpb);
      if (g < 32) d.ctrl256[g] = static_cast<uint8_t>(g / cpb);
    }
    return;
  }
}

// Generic decode of `nbytes` bytes into dst[0 .. nbytes*cpb) (writes up to 7 bytes beyond).
template <int CPB>
inline void decode_generic_n(const uint8_t* src, int64_t nbytes, const int8_t* lut8, int8_t* dst) {
  int64_t j = 0;
  for (; j + 4 <= nbytes; j += 4) {
    uint64_t a, b, c, e;
    std::memcpy(&a, lut8 + src[j] * 8, 8);
    std::memcpy(&b, lut8 + src[j + 1] * 8, 8);
    std::memcpy(&c, lut8 + src[j + 2] * 8, 8);
    std::memcpy(&e, lut8 + src[j + 3] * 8, 8);
    std::memcpy(dst + j * CPB, &a, 8);
    std::memcpy(dst + (j + 1) * CPB, &b, 8);
    std::memcpy(dst + (j + 2) * CPB, &c, 8);
    std::memcpy(dst + (j + 3) * CPB, &e, 8);
  }
  for (; j < nbytes; ++j) std::memcpy(dst + j * CPB, lut8 + src[j] * 8, 8);
}

inline void decode_generic(const uint8_t* src, int64_t nbytes, int cpb, const int8_t* lut8, int8_t* dst) {
  switch (cpb) {
    case 1: return decode_generic_n<1>(src, nbytes, lut8, dst);
    case 2: return decode_generic_n<2>(src, nbytes, lut8, dst);
    case 4: return decode_generic_n<4>(src, nbytes, lut8, dst);
    case 5: return decode_generic_n<5>(src, nbytes, lut8, dst);
    default: return decode_generic_n<8>(src, nbytes, lut8, dst);
  }
}

void decode_row_scalar(const uint8_t* src, int64_t B, const Decoder& d, int8_t* dst) {
  if (d.kind == DEC_IDENTITY)
    std::memcpy(dst, src, B);
  else
    decode_generic(src, B, d.cpb, d.lut8, dst);
}

// ------------------------------------------------------------------------------------ scalar
void tile_scalar(const int8_t* x, int64_t M, int64_t K, const int8_t* w, int64_t ldw, int nr,
                 int32_t* out, int64_t N) {
  for (int64_t m = 0; m < M; ++m) {
    const int8_t* xr = x + m * K;
    for (int r = 0; r < nr; ++r) {
      const int8_t* wr = w + r * ldw;
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int32_t{xr[k]} * int32_t{wr[k]};
      out[m * N + r] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(s)));
    }
  }
}

#ifdef RB_X86
// ------------------------------------------------------------------------------------ AVX-512
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,avx,fma,bmi,bmi2,popcnt")

// Decodes biased weights (w + 128 as u8) for vpdpbusd.
void decode_row_avx512(const uint8_t* src, int64_t B, const Decoder& d, int8_t* dst) {
  if (d.kind == DEC_IDENTITY) {
    for (int64_t j = 0; j < B; ++j) dst[j] = static_cast<int8_t>(src[j] ^ 0x80);
    return;
  }
  if (d.kind != DEC_NIBBLE) return decode_generic(src, B, d.cpb, d.lut8b, dst);
  const int64_t bpc = 64 / d.cpb;  // source bytes per 64-column chunk: 32, 16 or 8
  const __m512i andp = _mm512_load_si512(d.andp);
  const __m512i tab = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(d.t16b)));
  const __mmask64 hi = d.himask64;
  int64_t nch;
  if (bpc == 32) {  // qword permute brings each 128-bit lane its 8 source bytes
    nch = B / bpc;
    const __m512i perm = _mm512_load_si512(d.perm512), ctrl = _mm512_load_si512(d.ctrl512);
    for (int64_t c = 0; c < nch; ++c) {
      __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + c * bpc)));
      v = _mm512_shuffle_epi8(_mm512_permutexvar_epi64(perm, v), ctrl);
      v = _mm512_mask_blend_epi8(hi, v, _mm512_srli_epi16(v, 4));
      _mm512_storeu_si512(dst + c * 64, _mm512_shuffle_epi8(tab, _mm512_and_si512(v, andp)));
    }
  } else {  // 16 source bytes broadcast to every lane (a load, no shuffle); needs 16 readable bytes
    nch = B >= 16 ? (B - 16) / bpc + 1 : 0;
    const __m512i ctrl = _mm512_load_si512(d.ctrl512b);
    for (int64_t c = 0; c < nch; ++c) {
      __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + c * bpc)));
      v = _mm512_shuffle_epi8(v, ctrl);
      v = _mm512_mask_blend_epi8(hi, v, _mm512_srli_epi16(v, 4));
      _mm512_storeu_si512(dst + c * 64, _mm512_shuffle_epi8(tab, _mm512_and_si512(v, andp)));
    }
  }
  decode_generic(src + nch * bpc, B - nch * bpc, d.cpb, d.lut8b, dst + nch * 64);
}

inline __m256i half_512(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

inline __m128i hsum4_512(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m256i ab = _mm256_hadd_epi32(half_512(a), half_512(b));
  const __m256i cd = _mm256_hadd_epi32(half_512(c), half_512(d));
  const __m256i s = _mm256_hadd_epi32(ab, cd);
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

// out[m, 0..nr) for all M activation rows. xq: int8 [M, Kp] activations padded with 0; w: biased
// weights (w + 128, u8); xcorr[m] = 128 * sum(x[m]).
void tile_vnni(const int8_t* xq, const int32_t* xcorr, int64_t M, int64_t Kp, const int8_t* w,
               int64_t ldw, int nr, int32_t* out, int64_t N) {
  const int8_t *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
  const __mmask8 sm = static_cast<__mmask8>((1u << nr) - 1);
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) {
    const int8_t *x0 = xq + m * Kp, *x1 = x0 + Kp, *x2 = x1 + Kp, *x3 = x2 + Kp;
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00;
    __m512i a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512i a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512i a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    for (int64_t k = 0; k < Kp; k += 64) {
      const __m512i v0 = _mm512_loadu_si512(w0 + k), v1 = _mm512_loadu_si512(w1 + k);
      const __m512i v2 = _mm512_loadu_si512(w2 + k), v3 = _mm512_loadu_si512(w3 + k);
      __m512i xv = _mm512_loadu_si512(x0 + k);
      a00 = _mm512_dpbusd_epi32(a00, v0, xv); a01 = _mm512_dpbusd_epi32(a01, v1, xv);
      a02 = _mm512_dpbusd_epi32(a02, v2, xv); a03 = _mm512_dpbusd_epi32(a03, v3, xv);
      xv = _mm512_loadu_si512(x1 + k);
      a10 = _mm512_dpbusd_epi32(a10, v0, xv); a11 = _mm512_dpbusd_epi32(a11, v1, xv);
      a12 = _mm512_dpbusd_epi32(a12, v2, xv); a13 = _mm512_dpbusd_epi32(a13, v3, xv);
      xv = _mm512_loadu_si512(x2 + k);
      a20 = _mm512_dpbusd_epi32(a20, v0, xv); a21 = _mm512_dpbusd_epi32(a21, v1, xv);
      a22 = _mm512_dpbusd_epi32(a22, v2, xv); a23 = _mm512_dpbusd_epi32(a23, v3, xv);
      xv = _mm512_loadu_si512(x3 + k);
      a30 = _mm512_dpbusd_epi32(a30, v0, xv); a31 = _mm512_dpbusd_epi32(a31, v1, xv);
      a32 = _mm512_dpbusd_epi32(a32, v2, xv); a33 = _mm512_dpbusd_epi32(a33, v3, xv);
    }
    _mm_mask_storeu_epi32(out + (m + 0) * N, sm, _mm_sub_epi32(hsum4_512(a00, a01, a02, a03), _mm_set1_epi32(xcorr[m + 0])));
    _mm_mask_storeu_epi32(out + (m + 1) * N, sm, _mm_sub_epi32(hsum4_512(a10, a11, a12, a13), _mm_set1_epi32(xcorr[m + 1])));
    _mm_mask_storeu_epi32(out + (m + 2) * N, sm, _mm_sub_epi32(hsum4_512(a20, a21, a22, a23), _mm_set1_epi32(xcorr[m + 2])));
    _mm_mask_storeu_epi32(out + (m + 3) * N, sm, _mm_sub_epi32(hsum4_512(a30, a31, a32, a33), _mm_set1_epi32(xcorr[m + 3])));
  }
  for (; m < M; ++m) {
    const int8_t* x0 = xq + m * Kp;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < Kp; k += 64) {
      const __m512i xv = _mm512_loadu_si512(x0 + k);
      a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(w0 + k), xv);
      a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(w1 + k), xv);
      a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(w2 + k), xv);
      a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(w3 + k), xv);
    }
    _mm_mask_storeu_epi32(out + m * N, sm, _mm_sub_epi32(hsum4_512(a0, a1, a2, a3), _mm_set1_epi32(xcorr[m])));
  }
}

// xq[m] = x[m] padded with 0 to Kp columns; returns 128 * sum(x[m]).
int32_t prep_x_vnni(const int8_t* x, int64_t K, int64_t Kp, int8_t* xq) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i s = _mm512_setzero_si512();
  for (int64_t k = 0; k < Kp; k += 64) {
    const int64_t n = std::min<int64_t>(64, std::max<int64_t>(0, K - k));
    const __mmask64 mk = n >= 64 ? ~__mmask64{0} : ((__mmask64{1} << n) - 1);
    const __m512i v = _mm512_maskz_loadu_epi8(mk, x + k);
    _mm512_storeu_si512(xq + k, v);
    s = _mm512_dpbusd_epi32(s, ones, v);
  }
  return static_cast<int32_t>(static_cast<uint32_t>(_mm512_reduce_add_epi32(s)) << 7);
}

#pragma GCC pop_options

// ------------------------------------------------------------------------------------ AVX2
#pragma GCC push_options
#pragma GCC target("avx2,avx,fma,bmi,bmi2,popcnt")

void decode_row_avx2(const uint8_t* src, int64_t B, const Decoder& d, int8_t* dst) {
  if (d.kind != DEC_NIBBLE) return decode_row_scalar(src, B, d, dst);
  const int64_t bpc = 32 / d.cpb, nch = B / bpc;  // 4, 8 or 16 bytes per 32 columns
  const __m256i ctrl = _mm256_load_si256(reinterpret_cast<const __m256i*>(d.ctrl256));
  const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(d.hi));
  const __m256i andp = _mm256_load_si256(reinterpret_cast<const __m256i*>(d.andp));
  const __m256i tab = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(d.t16)));
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  for (int64_t c = 0; c < nch; ++c) {
    const uint8_t* s = src + c * bpc;
    __m128i b;
    if (bpc == 16) {
      b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
    } else if (bpc == 8) {
      b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s));
    } else {
      int32_t t;
      std::memcpy(&t, s, 4);
      b = _mm_cvtsi32_si128(t);
    }
    __m256i v = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(b), ctrl);
    v = _mm256_blendv_epi8(v, _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4), hi);
    v = _mm256_and_si256(v, andp);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c * 32), _mm256_shuffle_epi8(tab, v));
  }
  decode_generic(src + nch * bpc, B - nch * bpc, d.cpb, d.lut8, dst + nch * 32);
}

inline __m128i hsum4_256(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

inline __m256i ld_w16(const int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline void store_n(int32_t* dst, __m128i v, int nr) {
  alignas(16) int32_t t[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(t), v);
  for (int r = 0; r < nr; ++r) dst[r] = t[r];
}

// xw: int16 [M, Kp] activations (0 in the padding); w: int8 rows, sign-extended on the fly.
void tile_avx2(const int16_t* xw, int64_t M, int64_t Kp, const int8_t* w, int64_t ldw, int nr,
               int32_t* out, int64_t N) {
  const int8_t *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
  int64_t m = 0;
  for (; m + 2 <= M; m += 2) {
    const int16_t *x0 = xw + m * Kp, *x1 = x0 + Kp;
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a02 = a00, a03 = a00;
    __m256i a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    for (int64_t k = 0; k < Kp; k += 16) {
      const __m256i v0 = ld_w16(w0 + k), v1 = ld_w16(w1 + k), v2 = ld_w16(w2 + k), v3 = ld_w16(w3 + k);
      __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + k));
      a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(xv, v0));
      a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(xv, v1));
      a02 = _mm256_add_epi32(a02, _mm256_madd_epi16(xv, v2));
      a03 = _mm256_add_epi32(a03, _mm256_madd_epi16(xv, v3));
      xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + k));
      a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(xv, v0));
      a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(xv, v1));
      a12 = _mm256_add_epi32(a12, _mm256_madd_epi16(xv, v2));
      a13 = _mm256_add_epi32(a13, _mm256_madd_epi16(xv, v3));
    }
    store_n(out + m * N, hsum4_256(a00, a01, a02, a03), nr);
    store_n(out + (m + 1) * N, hsum4_256(a10, a11, a12, a13), nr);
  }
  for (; m < M; ++m) {
    const int16_t* x0 = xw + m * Kp;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t k = 0; k < Kp; k += 16) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + k));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(xv, ld_w16(w0 + k)));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(xv, ld_w16(w1 + k)));
      a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(xv, ld_w16(w2 + k)));
      a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(xv, ld_w16(w3 + k)));
    }
    store_n(out + m * N, hsum4_256(a0, a1, a2, a3), nr);
  }
}

#pragma GCC pop_options
#endif  // RB_X86

int detect_isa() {
#ifdef RB_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vnni"))
    return ISA_AVX512VNNI;
  if (__builtin_cpu_supports("avx2")) return ISA_AVX2;
#endif
  return ISA_SCALAR;
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
std::unique_ptr<T, AlignedFree> aligned_buffer(int64_t count) {
  const size_t bytes = ((static_cast<size_t>(count) * sizeof(T) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, std::max<size_t>(bytes, 64));
  TORCH_CHECK(p != nullptr, "lowbit_matmul: out of memory");
  return std::unique_ptr<T, AlignedFree>(static_cast<T*>(p));
}

torch::Tensor matmul(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& lut,
                     int64_t k, int64_t isa) {
  TORCH_CHECK(x.device().is_cpu() && packed.device().is_cpu() && lut.device().is_cpu(),
              "lowbit_matmul: CPU tensors only");
  TORCH_CHECK(x.scalar_type() == torch::kChar && x.dim() == 2 && x.is_contiguous(),
              "lowbit_matmul: x must be a contiguous int8 [M, K] tensor");
  TORCH_CHECK(packed.scalar_type() == torch::kByte && packed.dim() == 2 && packed.is_contiguous(),
              "lowbit_matmul: packed must be a contiguous uint8 [N, B] tensor");
  TORCH_CHECK(lut.scalar_type() == torch::kChar && lut.dim() == 2 && lut.size(0) == 256 &&
                  lut.is_contiguous(),
              "lowbit_matmul: lut must be a contiguous int8 [256, cpb] tensor");
  const int cpb = static_cast<int>(lut.size(1));
  TORCH_CHECK(cpb == 1 || cpb == 2 || cpb == 4 || cpb == 5 || cpb == 8,
              "lowbit_matmul: cpb must be one of 1, 2, 4, 5, 8");
  const int64_t M = x.size(0), K = k, N = packed.size(0), B = packed.size(1);
  TORCH_CHECK(K >= 0 && x.size(1) == K, "lowbit_matmul: x.shape[1] != k");
  TORCH_CHECK(B == (K + cpb - 1) / cpb, "lowbit_matmul: packed.shape[1] != ceil(k / cpb)");

  const int best = detect_isa();
  if (isa < 0 || isa > best) isa = best;
  auto out = torch::empty({M, N}, x.options().dtype(torch::kInt));
  if (M == 0 || N == 0) return out;
  if (K == 0) return out.zero_();

  auto dec = aligned_buffer<Decoder>(1);
  new (dec.get()) Decoder();
  build_decoder(*dec, lut.data_ptr<int8_t>(), cpb);
  const Decoder& d = *dec;

  const int8_t* xp = x.data_ptr<int8_t>();
  const uint8_t* pp = packed.data_ptr<uint8_t>();
  int32_t* op = out.data_ptr<int32_t>();
  const int64_t Kp = (K + KALIGN - 1) / KALIGN * KALIGN;
  const int64_t ntiles = (N + TILE_N - 1) / TILE_N;

  // Activations in the layout the dot kernel wants, once per call (shared by all threads).
  std::unique_ptr<int8_t, AlignedFree> xq;
  std::unique_ptr<int32_t, AlignedFree> xcorr;
  std::unique_ptr<int16_t, AlignedFree> xw;
#ifdef RB_X86
  if (isa == ISA_AVX512VNNI) {
    xq = aligned_buffer<int8_t>(M * Kp);
    xcorr = aligned_buffer<int32_t>(M);
    at::parallel_for(0, M, std::max<int64_t>(1, 65536 / Kp), [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) xcorr.get()[m] = prep_x_vnni(xp + m * K, K, Kp, xq.get() + m * Kp);
    });
  } else if (isa == ISA_AVX2) {
    xw = aligned_buffer<int16_t>(M * Kp);
    at::parallel_for(0, M, std::max<int64_t>(1, 65536 / Kp), [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) {
        int16_t* dst = xw.get() + m * Kp;
        for (int64_t c = 0; c < K; ++c) dst[c] = xp[m * K + c];
        for (int64_t c = K; c < Kp; ++c) dst[c] = 0;
      }
    });
  }
#endif

  // Activation rows per pass: a block of x stays in L2 while the thread's weight tiles stream by
  // (many tokens: each tile is decoded once per block; decoding is cheap next to the dots).
  const int64_t x_bytes_per_row = Kp * (isa == ISA_AVX2 ? 2 : 1);
  const int64_t mb = std::max<int64_t>(16, (int64_t{1} << 20) / x_bytes_per_row) / 4 * 4;

  // Tiny problems run on one thread; otherwise a chunk of tiles per thread.
  const int64_t work_per_tile = TILE_N * Kp * (M + 2);
  const int64_t grain = std::max<int64_t>(1, (1 << 18) / work_per_tile);
  at::parallel_for(0, ntiles, grain, [&](int64_t t0, int64_t t1) {
    const int64_t ldw = Kp;
    auto wbuf = aligned_buffer<int8_t>(TILE_N * ldw + 64);  // +64: decode may write 7 bytes past
    int8_t* w = wbuf.get();
    for (int64_t m0 = 0; m0 < M; m0 += mb) {
      const int64_t mc = std::min(mb, M - m0);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * TILE_N;
        const int nr = static_cast<int>(std::min<int64_t>(TILE_N, N - n0));
        for (int r = 0; r < TILE_N; ++r) {
          int8_t* wr = w + r * ldw;
          if (r >= nr) {
            std::memset(wr, 0, ldw);
            continue;
          }
          const uint8_t* src = pp + (n0 + r) * B;
#ifdef RB_X86
          if (isa == ISA_AVX512VNNI)
            decode_row_avx512(src, B, d, wr);
          else if (isa == ISA_AVX2)
            decode_row_avx2(src, B, d, wr);
          else
#endif
            decode_row_scalar(src, B, d, wr);
          std::memset(wr + K, 0, ldw - K);  // padding columns of the last byte decode to junk
        }
        int32_t* o = op + m0 * N + n0;
#ifdef RB_X86
        if (isa == ISA_AVX512VNNI) {
          tile_vnni(xq.get() + m0 * Kp, xcorr.get() + m0, mc, Kp, w, ldw, nr, o, N);
          continue;
        }
        if (isa == ISA_AVX2) {
          tile_avx2(xw.get() + m0 * Kp, mc, Kp, w, ldw, nr, o, N);
          continue;
        }
#endif
        tile_scalar(xp + m0 * K, mc, K, w, ldw, nr, o, N);
      }
    }
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ringbit packed low-bit weight x int8 activation matmul (CPU)";
  m.def("matmul", &matmul, "int32 [M, N] = x [M, K] int8 @ decode(packed [N, B], lut [256, cpb])[:, :k].T",
        pybind11::arg("x"), pybind11::arg("packed"), pybind11::arg("lut"), pybind11::arg("k"),
        pybind11::arg("isa") = -1);
  m.def("best_isa", &detect_isa, "0 = scalar, 1 = avx2, 2 = avx512 vnni (what this CPU runs)");
}
