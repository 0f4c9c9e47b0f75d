// Memory for the connection table's large arrays (entries and index).
//
// With millions of connections every lookup lands on a random page, and on
// 4 KiB pages the TLB misses cost as much as the cache misses. DPDK's own
// memory may not be huge pages either (`--no-huge`), so the table asks the
// kernel for transparent huge pages on its own mappings: 2 MiB-aligned
// anonymous memory with MADV_HUGEPAGE (honoured when THP is `madvise` or
// `always`; otherwise it is ordinary memory). Pages are still only touched,
// and so only resident, as the table fills.
#if canImport(Glibc)
import Glibc
#endif

struct TableMemory {
    /// The usable, 2 MiB-aligned start; the mapping itself (for unmapping).
    let start: UnsafeMutableRawPointer
    let mapping: UnsafeMutableRawPointer
    let mappingBytes: Int

    static let hugePage = 2 << 20

    /// `bytes` of zeroed memory, or nil when the kernel refuses the mapping.
    static func map(bytes: Int) -> TableMemory? {
        #if canImport(Glibc)
        let size = max(bytes, 1)
        let total = size + hugePage
        guard let m = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              m != MAP_FAILED else { return nil }
        let aligned = (Int(bitPattern: m) + hugePage - 1) & ~(hugePage - 1)
        let start = UnsafeMutableRawPointer(bitPattern: aligned)!
        if size >= hugePage { _ = madvise(start, (size + hugePage - 1) & ~(hugePage - 1), MADV_HUGEPAGE) }
        return TableMemory(start: start, mapping: m, mappingBytes: total)
        #else
        return nil
        #endif
    }

    func unmap() {
        #if canImport(Glibc)
        _ = munmap(mapping, mappingBytes)
        #endif
    }
}
