//! The default seccomp filter. Docker's default profile is an allow-list;
//! this one is the same policy written as a deny-list (default ALLOW): every
//! call Docker's profile does not allow a container with Docker's default
//! capabilities is refused here, and the calls Docker allows with an added
//! capability (`includes.caps`) are allowed here with that capability.
//! docs/security.md lists where the two deliberately differ.

use serde_json::{json, Value};

/// Refused with EPERM whatever the capabilities: kernel-wide state (kexec,
/// keyrings, swap, sysctl, the old module calls), attack surface Docker
/// closes (`io_uring`, `userfaultfd`, NUMA page migration), and obsolete
/// calls nothing needs (most of them are ENOSYS stubs on a modern kernel).
const DENIED_SYSCALLS: &[&str] = &[
    "_sysctl",
    "add_key",
    "afs_syscall",
    "bdflush",
    "break",
    "create_module",
    "ftime",
    "get_kernel_syms",
    "get_tls",
    "getpmsg",
    "gtty",
    "idle",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lock",
    "migrate_pages",
    "move_pages",
    "mpx",
    "nfsservctl",
    "nice",
    "oldfstat",
    "oldlstat",
    "oldolduname",
    "oldstat",
    "olduname",
    "pciconfig_iobase",
    "pciconfig_read",
    "pciconfig_write",
    "prof",
    "profil",
    "putpmsg",
    "query_module",
    "readdir",
    "request_key",
    "security",
    "sgetmask",
    "sigaction",
    "signal",
    "sigpending",
    "sigsuspend",
    "ssetmask",
    "stty",
    "swapoff",
    "swapon",
    "sysfs",
    "tuxcall",
    "ulimit",
    "uselib",
    "userfaultfd",
    "ustat",
    "usr26",
    "usr32",
    "vm86",
    "vm86old",
    "vserver",
];

/// Refused with EPERM unless the container has one of the capabilities, as
/// Docker's profile allows them (`includes.caps`). Without CAP_SYS_ADMIN a
/// container cannot mount, leave or make namespaces (see also `clone`
/// below), or reach quotas, fanotify and the LSM attributes.
const CAP_SYSCALLS: &[(&[&str], &[&str])] = &[
    (
        &["CAP_SYS_ADMIN"],
        &[
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            // Docker allows name_to_handle_at to every container and
            // pivot_root to none; ketch keeps both here, as before.
            "name_to_handle_at",
            "open_tree",
            "open_tree_attr",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (&["CAP_SYS_ADMIN", "CAP_BPF"], &["bpf"]),
    (&["CAP_SYS_ADMIN", "CAP_PERFMON"], &["perf_event_open"]),
    (&["CAP_SYS_ADMIN", "CAP_SYSLOG"], &["syslog"]),
    // The shocker escape: a file handle opens any file on the filesystem.
    (&["CAP_DAC_READ_SEARCH"], &["open_by_handle_at"]),
    (&["CAP_SYS_BOOT"], &["reboot"]),
    (&["CAP_SYS_CHROOT"], &["chroot"]),
    (
        &["CAP_SYS_MODULE"],
        &["delete_module", "finit_module", "init_module"],
    ),
    (
        &["CAP_SYS_NICE"],
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (&["CAP_SYS_PACCT"], &["acct"]),
    // Docker allows ptrace and process_vm_* by default (kernel 4.8 and
    // later); ketch keeps them behind CAP_SYS_PTRACE, as before.
    (
        &["CAP_SYS_PTRACE"],
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (&["CAP_SYS_RAWIO"], &["ioperm", "iopl"]),
    // Docker allows clock_adjtime by default (the kernel checks
    // CAP_SYS_TIME before it changes anything); ketch keeps it here.
    (
        &["CAP_SYS_TIME"],
        &[
            "clock_adjtime",
            "clock_adjtime64",
            "clock_settime",
            "clock_settime64",
            "settimeofday",
            "stime",
        ],
    ),
    (&["CAP_SYS_TTY_CONFIG"], &["vhangup"]),
];

/// The `clone` flags that make a namespace, refused without CAP_SYS_ADMIN as
/// Docker refuses them (its mask 0x7e020000). CLONE_NEWTIME (0x80) is not
/// here: legacy `clone` reads those bits as the exit signal, and only
/// `clone3` and `unshare` can ask for a time namespace.
const CLONE_NAMESPACE_FLAGS: [i32; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// Socket families Docker refuses: AF_ALG (the kernel's crypto API, a
/// steady source of kernel bugs) and AF_VSOCK (a channel to the hypervisor).
const DENIED_SOCKET_FAMILIES: [u64; 2] = [38, 40];

/// The persona bits a container may set: PER_LINUX32 (bit 3) and UNAME26
/// (bit 17). Docker allows `personality` with PER_LINUX (0), either bit or
/// both, and 0xffffffff (which only reads the persona); nothing else.
const PERSONA_ALLOWED_BITS: [u32; 2] = [3, 17];

/// The `personality` tests, as (bit set, bit clear) pairs, that together
/// refuse exactly what Docker refuses. An argument outside Docker's five
/// values has a run of set bits (read around the 32-bit circle) holding a
/// bit outside PERSONA_ALLOWED_BITS and followed by a clear bit; the pair
/// (last bit of the run, next bit) catches it, or, when the run ends on an
/// allowed bit, (the bit before it, next bit). No pair matches one of the
/// five values: each needs a disallowed bit set and some bit clear. Only the
/// low 32 bits are tested, as the kernel reads only those.
fn persona_tests() -> Vec<(u32, u32)> {
    (0..32u32)
        .map(|bit| {
            if PERSONA_ALLOWED_BITS.contains(&bit) {
                (bit - 1, bit + 1)
            } else {
                (bit, (bit + 1) % 32)
            }
        })
        .collect()
}

/// An `SCMP_CMP_MASKED_EQ` test of argument `index`: `arg & mask == value`.
/// libcontainer 0.7 takes the mask from `valueTwo` and the datum from
/// `value`, the other way round from runc and the runtime spec. Where
/// `mask == value` (the `clone` rules) both readings agree; elsewhere this
/// follows libcontainer, so re-check it when libcontainer is upgraded (the
/// other reading would make those rules match nothing).
fn masked_eq(index: u32, mask: u64, value: u64) -> Value {
    json!({"index": index, "value": value, "valueTwo": mask, "op": "SCMP_CMP_MASKED_EQ"})
}

/// A rule refusing `name` with `errno` when the argument test holds.
/// Several rules for one call add up: any that holds refuses the call.
fn refuse_if(name: &str, errno: i32, arg: Value) -> Value {
    json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": [arg]})
}
/// The architectures a container on this host can make syscalls in (as
/// Docker's profile maps them): the native one and its compat modes. A
/// foreign one adds nothing but filter size, which every start compiles.
fn seccomp_architectures() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => &[
            "SCMP_ARCH_X86_64",
            "SCMP_ARCH_X86",
            "SCMP_ARCH_X32",
            "SCMP_ARCH_AARCH64",
            "SCMP_ARCH_ARM",
        ],
    }
}

/// The default seccomp filter of a container with `caps`.
pub(super) fn seccomp(caps: &[String]) -> Value {
    let has = |cap: &str| caps.iter().any(|c| c == cap);
    let mut names: Vec<&str> = DENIED_SYSCALLS.to_vec();
    for (needs, calls) in CAP_SYSCALLS {
        if !needs.iter().any(|&cap| has(cap)) {
            names.extend_from_slice(calls);
        }
    }
    let mut rules =
        vec![json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM})];
    if !has("CAP_SYS_ADMIN") {
        // One rule per flag: any namespace flag refuses the call. The flags
        // are argument 0 of clone on every architecture ketch runs on.
        for flag in CLONE_NAMESPACE_FLAGS {
            let flag = flag as u64;
            rules.push(refuse_if("clone", libc::EPERM, masked_eq(0, flag, flag)));
        }
        // clone3 passes its flags in memory, out of seccomp's sight. ENOSYS
        // (not EPERM) makes glibc fall back to clone, which is checked.
        rules.push(
            json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        );
    }
    for family in DENIED_SOCKET_FAMILIES {
        // The kernel reads the family as an int: the masked test also
        // catches the family with junk in the upper 32 bits.
        let eq = json!({"index": 0, "value": family, "op": "SCMP_CMP_EQ"});
        rules.push(refuse_if("socket", libc::EPERM, eq));
        rules.push(refuse_if(
            "socket",
            libc::EPERM,
            masked_eq(0, 0xffff_ffff, family),
        ));
    }
    for (set, clear) in persona_tests() {
        let test = masked_eq(0, (1u64 << set) | (1u64 << clear), 1u64 << set);
        rules.push(refuse_if("personality", libc::EPERM, test));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": seccomp_architectures(),
        "syscalls": rules,
    })
}

/// `filter` without the names the host's libseccomp cannot resolve: calls
/// newer than its tables (`lsm_*` and `open_tree_attr` for libseccomp
/// 2.5.4). libcontainer would skip them too, but with a warning that lands
/// on the container's own stderr, where the filter is loaded.
pub(super) fn known_syscalls(mut filter: Value) -> Value {
    if let Some(rules) = filter["syscalls"].as_array_mut() {
        for rule in rules.iter_mut() {
            if let Some(names) = rule["names"].as_array_mut() {
                names.retain(|n| {
                    n.as_str()
                        .is_some_and(|n| libseccomp::ScmpSyscall::from_name(n).is_ok())
                });
            }
        }
        rules.retain(|r| r["names"].as_array().is_some_and(|n| !n.is_empty()));
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::linux::spec::capabilities;

    #[test]
    fn seccomp_relaxes_with_caps() {
        let s = seccomp(&["CAP_SYS_ADMIN".into()]).to_string();
        assert!(!s.contains("\"mount\""));
        assert!(s.contains("kexec_load"));
        assert!(seccomp(&[]).to_string().contains("\"mount\""));
    }

    /// The rules of `filter` that name `call`.
    fn rules_for(filter: &Value, call: &str) -> Vec<Value> {
        let rules = filter["syscalls"].as_array().unwrap();
        rules
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == call))
            .cloned()
            .collect()
    }

    /// Whether `filter` refuses `call` with EPERM whatever its arguments.
    fn refused(filter: &Value, call: &str) -> bool {
        rules_for(filter, call)
            .iter()
            .any(|r| r.get("args").is_none() && r["errnoRet"] == libc::EPERM)
    }

    /// Whether `filter` refuses `personality(persona)`, reading the masked
    /// tests as libcontainer reads them (the mask in `valueTwo`).
    fn persona_refused(filter: &Value, persona: u64) -> bool {
        rules_for(filter, "personality").iter().any(|r| {
            let arg = &r["args"][0];
            let mask = arg["valueTwo"].as_u64().unwrap();
            (persona & mask) == arg["value"].as_u64().unwrap()
        })
    }

    #[test]
    fn seccomp_is_a_runtime_spec_filter() {
        for caps in [Vec::new(), capabilities(&["ALL".into()], &[]).unwrap()] {
            let parsed: Result<oci_spec::runtime::LinuxSeccomp, _> =
                serde_json::from_value(seccomp(&caps));
            assert!(parsed.is_ok(), "{parsed:?}");
        }
    }

    #[test]
    fn unknown_syscalls_are_left_out() {
        let filter = json!({"syscalls": [
            {"names": ["read", "no_such_call"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"},
        ]});
        let known = known_syscalls(filter);
        assert_eq!(known["syscalls"].as_array().unwrap().len(), 1);
        assert_eq!(known["syscalls"][0]["names"], json!(["read"]));
    }

    #[test]
    fn clone_namespaces_need_sys_admin() {
        let strict = seccomp(&capabilities(&[], &[]).unwrap());
        let clone = rules_for(&strict, "clone");
        assert_eq!(clone.len(), CLONE_NAMESPACE_FLAGS.len());
        let mut mask = 0;
        for rule in &clone {
            assert_eq!(rule["errnoRet"], libc::EPERM);
            let arg = &rule["args"][0];
            assert_eq!(arg["index"], 0);
            assert_eq!(arg["op"], "SCMP_CMP_MASKED_EQ");
            // Mask and datum alike: right whichever field is the mask.
            assert_eq!(arg["value"], arg["valueTwo"]);
            mask |= arg["value"].as_u64().unwrap();
        }
        assert_eq!(mask, 0x7e02_0000, "Docker's namespace mask");
        let clone3 = rules_for(&strict, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0]["errnoRet"], libc::ENOSYS);
        assert!(clone3[0].get("args").is_none());

        let admin = seccomp(&capabilities(&["SYS_ADMIN".into()], &[]).unwrap());
        assert!(rules_for(&admin, "clone").is_empty());
        assert!(rules_for(&admin, "clone3").is_empty());
    }

    #[test]
    fn seccomp_refuses_what_docker_refuses() {
        let defaults = seccomp(&capabilities(&[], &[]).unwrap());
        let all = seccomp(&capabilities(&["ALL".into()], &[]).unwrap());
        for call in [
            "io_uring_setup",
            "keyctl",
            "kexec_load",
            "userfaultfd",
            "vm86",
        ] {
            assert!(refused(&defaults, call) && refused(&all, call), "{call}");
        }
        for call in [
            "acct",
            "bpf",
            "fsconfig",
            "iopl",
            "kcmp",
            "mbind",
            "mount_setattr",
            "open_by_handle_at",
            "reboot",
            "sethostname",
            "settimeofday",
            "syslog",
            "vhangup",
        ] {
            assert!(refused(&defaults, call), "{call}");
            assert!(!refused(&all, call), "{call}");
        }
        // Docker's default capabilities include CAP_SYS_CHROOT.
        assert!(!refused(&defaults, "chroot"));
        let no_chroot = seccomp(&capabilities(&[], &["SYS_CHROOT".into()]).unwrap());
        assert!(refused(&no_chroot, "chroot"));
        // Either capability of a pair is enough.
        assert!(!refused(&seccomp(&["CAP_BPF".into()]), "bpf"));
        assert!(!refused(&seccomp(&["CAP_SYSLOG".into()]), "syslog"));
        assert!(refused(&seccomp(&["CAP_SYSLOG".into()]), "mount"));

        let families: Vec<u64> = rules_for(&defaults, "socket")
            .iter()
            .map(|r| r["args"][0]["value"].as_u64().unwrap())
            .collect();
        assert!(
            families.contains(&38) && families.contains(&40),
            "{families:?}"
        );
    }

    #[test]
    fn personality_as_docker() {
        const DOCKER_PERSONAS: [u64; 5] = [0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];
        let filter = seccomp(&[]);
        // Every persona with one or two bits set, or one or two bits clear.
        for a in 0..32 {
            for b in a..32 {
                let x = (1u64 << a) | (1u64 << b);
                for persona in [x, !x & 0xffff_ffff] {
                    let allowed = DOCKER_PERSONAS.contains(&persona);
                    assert_eq!(persona_refused(&filter, persona), !allowed, "{persona:#x}");
                }
            }
        }
        for persona in DOCKER_PERSONAS {
            assert!(!persona_refused(&filter, persona), "{persona:#x}");
        }
        // ADDR_NO_RANDOMIZE, alone and with PER_LINUX32; PER_BSD.
        for persona in [0x4_0000, 0x4_0008, 0x6] {
            assert!(persona_refused(&filter, persona), "{persona:#x}");
        }
    }
}
