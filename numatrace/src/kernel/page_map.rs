//! Calibrating `PAGE_MAP`: where the kernel's `struct page` array starts.
//!
//! The raw `mm_page_alloc` program gets a `struct page *`, not a pfn. On
//! SPARSEMEM_VMEMMAP kernels (x86-64, arm64, ...) pages sit in one array,
//! so `pfn = (ptr - base) / sizeof(struct page)`; the base is randomised at
//! boot and not exported (it is a data symbol, absent from kallsyms on
//! kernels without KALLSYMS_ALL). So it is measured: for a moment, a raw and
//! a classic program on `mm_page_alloc` see the pointer and the pfn of the
//! same allocations and compute the base. It is accepted only if every pair
//! on every CPU gave the same base; otherwise the classic program is used,
//! and nothing is guessed.
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
};
use numatrace_common::{PAGE_MAP_CALIBRATION_MAP, PAGE_MAP_MAP, PageMap, PageMapCalibration};

use super::sources::{self, AttachEnv, attach_one, raw_tp, tp};
use super::tracefs::Tracefs;

/// The calibration pair, on the same allocations.
pub(super) const PAIR: [sources::Attach; 2] = [
    raw_tp("page_map_calibration_raw", "kmem", "mm_page_alloc"),
    tp("page_map_calibration_tp", "kmem", "mm_page_alloc"),
];

/// Paired observations needed before a base is trusted.
const MIN_PAIRS: u64 = 64;
/// Bytes of fresh memory touched to cause allocations during calibration.
const TOUCH_BYTES: usize = 4 << 20;
const CHUNK_BYTES: usize = 256 << 10;

/// Measures the base, writes it to `PAGE_MAP` and returns it; or says why not.
pub fn calibrate(ebpf: &mut Ebpf, tracefs: &Tracefs, struct_size: Option<u64>) -> Result<PageMap, String> {
    let struct_size = struct_size.ok_or("the kernel's BTF does not give sizeof(struct page)")?;
    write(ebpf, PageMap { base: 0, struct_size })?;
    let observed = observe(ebpf, tracefs);
    sources::unload_variant(ebpf, &PAIR);
    let per_cpu = observed?;
    let base = verdict(&per_cpu)?;
    let map = PageMap { base, struct_size };
    write(ebpf, map)?;
    Ok(map)
}

/// Attaches the pair, causes allocations, and reads what each CPU paired.
fn observe(ebpf: &mut Ebpf, tracefs: &Tracefs) -> Result<Vec<PageMapCalibration>, String> {
    let env = AttachEnv { tracefs, btf: None, functions: Default::default(), unmet: Default::default() };
    for attach in &PAIR {
        attach_one(ebpf, &env, attach)?;
    }
    touch_fresh_memory();
    let slots: PerCpuArray<&MapData, PageMapCalibration> =
        PerCpuArray::try_from(ebpf.map(PAGE_MAP_CALIBRATION_MAP).ok_or("calibration map missing")?)
            .map_err(|e| format!("{e}"))?;
    let per_cpu = slots.get(&0, 0).map_err(|e| format!("reading the calibration: {e}"))?;
    Ok(per_cpu.iter().copied().collect())
}

/// Allocates pages in this thread: each first write to a fresh anonymous
/// mapping's page is one page allocation on this CPU. Mappings of 256 KiB
/// are too small for a transparent huge page, so each write is one 4 KiB page.
fn touch_fresh_memory() {
    for _ in 0..TOUCH_BYTES / CHUNK_BYTES {
        // SAFETY: a private anonymous mapping of our own, written within its
        // length and unmapped before it goes out of scope.
        unsafe {
            let chunk = libc::mmap(
                std::ptr::null_mut(),
                CHUNK_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if chunk == libc::MAP_FAILED {
                return;
            }
            for offset in (0..CHUNK_BYTES).step_by(4096) {
                std::ptr::write_volatile(chunk.cast::<u8>().add(offset), 1);
            }
            libc::munmap(chunk, CHUNK_BYTES);
        }
    }
}

/// The base every CPU agreed on, if the evidence is enough and consistent.
pub fn verdict(per_cpu: &[PageMapCalibration]) -> Result<u64, String> {
    let seen: Vec<&PageMapCalibration> = per_cpu.iter().filter(|c| c.agree > 0).collect();
    let pairs: u64 = seen.iter().map(|c| c.agree).sum();
    let disagree: u64 = per_cpu.iter().map(|c| c.disagree).sum();
    let Some(first) = seen.first() else { return Err("no page allocation was seen during calibration".to_string()) };
    if seen.iter().any(|c| c.base != first.base) {
        return Err("the page array base differed between CPUs (not a virtually mapped memmap?)".to_string());
    }
    // A rare mismatch is an allocation nested between the two programs (an
    // interrupt); more than 1 % means the pointer is not linear in the pfn.
    if disagree * 100 > pairs {
        return Err(format!("pointer and pfn disagreed in {disagree} of {} allocations", pairs + disagree));
    }
    if pairs < MIN_PAIRS {
        return Err(format!("only {pairs} allocations paired during calibration (need {MIN_PAIRS})"));
    }
    if first.base == 0 || first.base % 4096 != 0 {
        return Err(format!("implausible page array base {:#x}", first.base));
    }
    Ok(first.base)
}

fn write(ebpf: &mut Ebpf, map: PageMap) -> Result<(), String> {
    let mut array: Array<&mut MapData, PageMap> =
        Array::try_from(ebpf.map_mut(PAGE_MAP_MAP).ok_or("map PAGE_MAP missing")?).map_err(|e| format!("{e}"))?;
    array.set(0, map, 0).map_err(|e| format!("writing PAGE_MAP: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(base: u64, agree: u64, disagree: u64) -> PageMapCalibration {
        PageMapCalibration { base, agree, disagree, ..Default::default() }
    }

    #[test]
    fn accepts_one_base_seen_on_every_cpu() {
        let base = 0xffff_ea00_0000_0000;
        assert_eq!(verdict(&[cpu(base, 40, 0), cpu(0, 0, 0), cpu(base, 30, 0)]), Ok(base));
    }

    #[test]
    fn refuses_cpus_that_disagree() {
        let e = verdict(&[cpu(0xffff_ea00_0000_0000, 100, 0), cpu(0xffff_eb00_0000_0000, 100, 0)]).unwrap_err();
        assert!(e.contains("differed between CPUs"), "{e}");
    }

    #[test]
    fn refuses_pairs_that_disagree_often() {
        let e = verdict(&[cpu(0xffff_ea00_0000_0000, 100, 5)]).unwrap_err();
        assert!(e.contains("disagreed in 5 of 105"), "{e}");
    }

    #[test]
    fn tolerates_one_nested_allocation_in_hundreds() {
        assert!(verdict(&[cpu(0xffff_ea00_0000_0000, 500, 1)]).is_ok());
    }

    #[test]
    fn refuses_too_little_evidence_and_nothing_at_all() {
        assert!(verdict(&[cpu(0xffff_ea00_0000_0000, 10, 0)]).unwrap_err().contains("only 10"));
        assert!(verdict(&[cpu(0, 0, 0)]).unwrap_err().contains("no page allocation"));
    }

    #[test]
    fn refuses_an_unaligned_base() {
        assert!(verdict(&[cpu(0xffff_ea00_0000_0040, 100, 0)]).unwrap_err().contains("implausible"));
    }
}
