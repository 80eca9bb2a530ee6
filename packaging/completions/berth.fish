# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_berth_global_optspecs
    string join \n h/help V/version
end

function __fish_berth_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_berth_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_berth_using_subcommand
    set -l cmd (__fish_berth_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c berth -n "__fish_berth_needs_command" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_needs_command" -s V -l version -d 'Print version'
complete -c berth -n "__fish_berth_needs_command" -f -a "run" -d 'Run the agent: connect to the control plane and carry out its jobs'
complete -c berth -n "__fish_berth_needs_command" -f -a "apply" -d 'Run jobs from a JSON file on this host, without a control plane; print each final status as a `job.status` JSON line. Exit 0 when all succeed, 1 otherwise'
complete -c berth -n "__fish_berth_needs_command" -f -a "reconcile" -d 'Render every managed file again from the inventory and apply them as one change (after an upgrade or a template edit); print what changed as JSON'
complete -c berth -n "__fish_berth_needs_command" -f -a "renew" -d 'Renew now every AutoSSL certificate that is due, as the daemon does hourly; print each renewal\'s `ssl.renewal` event as a JSON line. Exit 1 if one failed'
complete -c berth -n "__fish_berth_needs_command" -f -a "metrics" -d 'Print one metrics snapshot as JSON'
complete -c berth -n "__fish_berth_needs_command" -f -a "doctor" -d 'Check the config, the key file, the state dir, TLS to the control plane and the tools berth drives; one line per check. Exit 1 when a check fails'
complete -c berth -n "__fish_berth_needs_command" -f -a "status" -d 'Show whether the daemon is connected, since when, its last heartbeat, the outbox length and the last jobs, read from the state dir (no daemon needed)'
complete -c berth -n "__fish_berth_needs_command" -f -a "version" -d 'Print the version'
complete -c berth -n "__fish_berth_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c berth -n "__fish_berth_using_subcommand run" -l config -r -F
complete -c berth -n "__fish_berth_using_subcommand run" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand apply" -l config -d 'The agent config to take `state_dir`, `root` and `test_jobs` from (default: /etc/berth/agent.toml when it exists)' -r -F
complete -c berth -n "__fish_berth_using_subcommand apply" -l root -d 'Place every host path under this directory instead of the config\'s root' -r -F
complete -c berth -n "__fish_berth_using_subcommand apply" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand reconcile" -l config -r -F
complete -c berth -n "__fish_berth_using_subcommand reconcile" -l root -r -F
complete -c berth -n "__fish_berth_using_subcommand reconcile" -l check -d 'Change nothing: print `{"upgrade_required": bool, "files": [...]}`, the managed files a reconcile would write or remove'
complete -c berth -n "__fish_berth_using_subcommand reconcile" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand renew" -l config -r -F
complete -c berth -n "__fish_berth_using_subcommand renew" -l root -r -F
complete -c berth -n "__fish_berth_using_subcommand renew" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand metrics" -l root -d 'Read host files (reboot-required, apt state) under this directory' -r -F
complete -c berth -n "__fish_berth_using_subcommand metrics" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand doctor" -l config -r -F
complete -c berth -n "__fish_berth_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand status" -l config -r -F
complete -c berth -n "__fish_berth_using_subcommand status" -l json -d 'Print the report as one JSON object'
complete -c berth -n "__fish_berth_using_subcommand status" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand version" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "run" -d 'Run the agent: connect to the control plane and carry out its jobs'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "apply" -d 'Run jobs from a JSON file on this host, without a control plane; print each final status as a `job.status` JSON line. Exit 0 when all succeed, 1 otherwise'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "reconcile" -d 'Render every managed file again from the inventory and apply them as one change (after an upgrade or a template edit); print what changed as JSON'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "renew" -d 'Renew now every AutoSSL certificate that is due, as the daemon does hourly; print each renewal\'s `ssl.renewal` event as a JSON line. Exit 1 if one failed'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "metrics" -d 'Print one metrics snapshot as JSON'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "doctor" -d 'Check the config, the key file, the state dir, TLS to the control plane and the tools berth drives; one line per check. Exit 1 when a check fails'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "status" -d 'Show whether the daemon is connected, since when, its last heartbeat, the outbox length and the last jobs, read from the state dir (no daemon needed)'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "version" -d 'Print the version'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run apply reconcile renew metrics doctor status version help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
