package RegContainers;

# Helpers for the podman, buildah and containerd tests (t/buildah.t,
# t/podman.t, t/containerd.t, and the podman round trip of t/auth_clients.t
# and t/token_clients.t): each tool runs in isolation inside one
# temporary directory, and nothing of the host's container configuration or
# state is read or written.
#
#   use lib 't/lib';
#   use RegTest;
#   use RegContainers;
#
#   my $c = RegContainers->new($tmp);        # $tmp: the test's temp dir
#   my ($rc, $out, $err) = $c->buildah('build', 'from', 'scratch');
#   my ($rc, $out, $err) = $c->podman('pull', 'pull', '--tls-verify=false',
#                                     "127.0.0.1:$port/repo:tag");
#
# The first argument of buildah() and podman() names a storage: each name is
# a separate, initially empty containers/storage (vfs driver, its own --root
# $tmp/storage-NAME and --runroot), so "pulled into an empty store" means
# what it says.
#
# Isolation.  As root, containers/image keeps its blob-info cache in
# /var/lib/containers/cache: it remembers which registry (host:port and
# repository) holds which blob and which compressed blob belongs to which
# uncompressed layer, and a later run may HEAD, mount or reuse blobs it
# remembers instead of uploading them.  As RegTools does for skopeo,
# _CONTAINERS_ROOTLESS_UID names a non-root user so containers/image puts the
# cache under $XDG_DATA_HOME/containers/cache, a directory of this test
# (podman and buildah still run as real root: euid 0 decides whether they
# enter a user namespace, and they do not).  Also private: HOME (the
# signature policy is $HOME/.config/containers/policy.json, accept
# anything), registries.conf (CONTAINERS_REGISTRIES_CONF, empty: only fully
# qualified names are used), storage.conf and containers.conf
# (CONTAINERS_STORAGE_CONF, CONTAINERS_CONF), podman's --tmpdir and network
# config dir, TMPDIR.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use Exporter qw(import);
use File::Path qw(make_path);
use File::Temp ();
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use POSIX ();
use Test::More;      # the podman round trip's assertions

require RegTest;         # slurp, spew
use RegTools qw(run3);   # re-exported: the one command runner

our @EXPORT_OK = qw(run3 gunzip_digest uploads_in_log mounts_in_log
                    log_since processes_mentioning upload_sessions);


sub new {
    my ($class, $dir) = @_;

    my $self = bless { dir => $dir }, $class;
    my $home = "$dir/home";

    make_path(map { "$home/$_" }
              qw(.config/containers data config run tmp podman-tmp netconf));

    RegTest::spew("$home/.config/containers/policy.json",
          '{"default":[{"type":"insecureAcceptAnything"}]}' . "\n");
    RegTest::spew("$dir/registries.conf", "# empty: fully qualified names only\n");
    RegTest::spew("$dir/storage.conf",
          "[storage]\ndriver = \"vfs\"\n"
          . "graphroot = \"$dir/storage-default\"\n"
          . "runroot = \"$dir/rd\"\n");
    RegTest::spew("$dir/containers.conf",
          "[engine]\nevents_logger = \"none\"\n"
          . "cgroup_manager = \"cgroupfs\"\n");

    $self->{home} = $home;
    $self->{env} = {
        HOME                       => $home,
        XDG_DATA_HOME              => "$home/data",
        XDG_CONFIG_HOME            => "$home/config",
        XDG_RUNTIME_DIR            => "$home/run",
        TMPDIR                     => "$home/tmp",
        CONTAINERS_REGISTRIES_CONF => "$dir/registries.conf",
        CONTAINERS_STORAGE_CONF    => "$dir/storage.conf",
        CONTAINERS_CONF            => "$dir/containers.conf",
        _CONTAINERS_ROOTLESS_UID   => ($> == 0 ? 65534 : $>),
    };

    return $self;
}

sub dir  { $_[0]{dir} }
sub home { $_[0]{home} }
sub env  { $_[0]{env} }

# the private blob-info cache (exists once a copy ran)

sub blob_info_cache {
    my ($self) = @_;
    return "$self->{home}/data/containers/cache/blob-info-cache-v1.boltdb";
}

sub storage_dir {
    my ($self, $name) = @_;
    die "bad storage name $name\n" unless $name =~ /^[\w-]+$/;
    return "$self->{dir}/storage-$name";
}

# podman refuses a runroot longer than 50 characters (conmon's socket paths
# live there): runroots are short numbered directories, under /tmp when the
# test directory's path is already too long

sub runroot_dir {
    my ($self, $name) = @_;

    $self->{runroots}{$name} //= do {
        my $n = keys %{ $self->{runroots} };
        my $base = $self->{dir};

        if (length("$base/r$n") > 50) {
            $self->{short} //= File::Temp::tempdir('rr-XXXXXX', DIR => '/tmp',
                                                   CLEANUP => 1);
            $base = $self->{short};
        }

        "$base/r$n";
    };

    return $self->{runroots}{$name};
}

sub _storage_flags {
    my ($self, $name) = @_;

    my $s = $self->storage_dir($name);
    my $run = $self->runroot_dir($name);
    make_path($s, $run);

    return ('--storage-driver', 'vfs', '--root', $s, '--runroot', $run);
}

sub buildah {
    my ($self, $storage, @args) = @_;

    return run3(['buildah', $self->_storage_flags($storage), @args],
                env => $self->{env});
}

sub podman {
    my ($self, $storage, @args) = @_;

    my $h = $self->{home};

    return run3(['podman', $self->_storage_flags($storage),
                 '--events-backend', 'none', '--cgroup-manager', 'cgroupfs',
                 '--tmpdir', "$h/podman-tmp", '--network-config-dir',
                 "$h/netconf", @args],
                env => $self->{env});
}


# The podman round trip t/auth_clients.t and t/token_clients.t share, in
# three steps, each asserting what it does.  %o: reg (host:port), opts
# (podman's flags for it: TLS and --authfile $o{auth}), user, password.
#
# podman_login: a wrong password refused (podman's message like
# $o{refused}), then the login, its credentials in the auth file.

sub podman_login {
    my ($self, %o) = @_;

    my ($rc, $out, $err) = $self->podman('a', 'login', @{ $o{opts} },
                                         '-u', $o{user}, '-p', 'wrong',
                                         $o{reg});
    isnt($rc, 0, 'podman login with a wrong password fails');
    like($err, $o{refused}, '... refused') or diag("$out$err");

    ($rc, $out, $err) = $self->podman('a', 'login', @{ $o{opts} },
                                      '-u', $o{user}, '-p', $o{password},
                                      $o{reg});
    is($rc, 0, "podman login $o{user}") or diag("$out$err");
    ok((_json_file($o{auth})->{auths} || {})->{ $o{reg} },
                   '... credentials in the auth file');
}

# podman_push_back: pull $o{from}, tag and push it as $o{to} (listed with
# tag v1 by $o{tags_of}->($repository)), pull that into an empty storage:
# the same image id, $o{config_digest}.

sub podman_push_back {
    my ($self, %o) = @_;

    my ($reg, @o) = ($o{reg}, @{ $o{opts} });
    my ($to_repo) = $o{to} =~ /^(.*):/;

    my ($rc, $out, $err) = $self->podman('a', 'pull', @o, "$reg/$o{from}");
    is($rc, 0, "podman pull $o{from}") or diag("$out$err");

    ($rc, $out, $err) = $self->podman('a', 'tag', "$reg/$o{from}",
                                      "$reg/$o{to}");
    is($rc, 0, 'podman tag') or diag("$out$err");

    ($rc, $out, $err) = $self->podman('a', 'push', @o, "$reg/$o{to}");
    is($rc, 0, "podman push $o{to}") or diag("$out$err");
    is_deeply($o{tags_of}->($to_repo), ['v1'], '... tagged v1');

    ($rc, $out, $err) = $self->podman('b', 'pull', @o, "$reg/$o{to}");
    is($rc, 0, "podman pull $o{to} into an empty storage")
        or diag("$out$err");
    ($rc, $out) = $self->podman('b', 'image', 'inspect', '--format', '{{.Id}}',
                                "$reg/$o{to}");
    is('sha256:' . ($out =~ s/\s+//gr), $o{config_digest},
                   '... the same image id');
}

# podman_logout: the push of $o{from} as $o{forbidden} refused (podman's
# error then given to $o{denied}), logout, its credentials removed, and an
# anonymous pull of $o{public}.

sub podman_logout {
    my ($self, %o) = @_;

    my ($reg, @o) = ($o{reg}, @{ $o{opts} });

    my ($rc, $out, $err) = $self->podman('a', 'push', @o, "$reg/$o{from}",
                                         "$reg/$o{forbidden}");
    isnt($rc, 0, "podman push into $o{forbidden} as $o{user} fails");
    $o{denied}->($err);

    ($rc, $out, $err) = $self->podman('a', 'logout', '--authfile', $o{auth},
                                      $reg);
    is($rc, 0, 'podman logout') or diag("$out$err");
    ok(!(_json_file($o{auth})->{auths} || {})->{$reg},
                   '... credentials removed');

    ($rc, $out, $err) = $self->podman('c', 'pull', @o, "$reg/$o{public}");
    is($rc, 0, "podman anonymous pull of $o{public}")
        or diag("$out$err");
}

sub _json_file {
    my ($file) = @_;

    return RegTools::json_decode(RegTest::slurp($file)) || {};
}


# "sha256:<hex>" of the gunzipped bytes, '' when they are not gzip

sub gunzip_digest {
    my ($bytes) = @_;

    my $plain;
    gunzip(\$bytes => \$plain, MultiStream => 1) or return '';

    return 'sha256:' . sha256_hex($plain);
}

# Part of an nginx access log from byte $offset on.

sub log_since {
    my ($file, $offset) = @_;

    my $log = RegTest::slurp($file);
    return length($log) >= $offset ? substr($log, $offset) : $log;
}

# Blobs of repository $name that the access log $log shows uploaded: a
# monolithic "POST .../blobs/uploads/?digest=D" or a session closed by
# "PUT .../blobs/uploads/<id>?digest=D", answered 201.  Returns a hash
# digest => number of uploads.

sub uploads_in_log {
    my ($log, $name) = @_;

    my %up;

    for my $line (split /\n/, $log) {
        next unless $line =~ m{"(?:POST|PUT)\ /v2/\Q$name\E/blobs/uploads/
                                [^"?\s]*\?(?:[^"\s]*&)?digest=
                                sha256(?::|%3A)([0-9a-f]{64})[^"]*"\ 201\ }xi;
        $up{"sha256:$1"}++;
    }

    return \%up;
}

# Blobs of repository $name that the access log $log shows mounted: a
# cross-repository mount "POST .../blobs/uploads/?mount=D&from=N" (or an
# automatic one, without from; parameters in any order, the colon of D
# literal or %3A) answered 201, the blob linked without a byte sent.  A
# mount attempt answered 202 opened an upload session instead and is not
# counted (its upload, if any, is in uploads_in_log).  Returns a hash
# digest => number of mounts.

sub mounts_in_log {
    my ($log, $name) = @_;

    my %mnt;

    for my $line (split /\n/, $log) {
        next unless $line =~ m{"POST\ /v2/\Q$name\E/blobs/uploads/
                                \?(?:[^"\s]*&)?mount=
                                sha256(?::|%3A)([0-9a-f]{64})
                                (?:&[^"\s]*)?\ [^"]*"\ 201\ }xi;
        $mnt{"sha256:$1"}++;
    }

    return \%mnt;
}

# Upload sessions left in the store under $root (registry_root): paths of
# repositories/<name>/_uploads/<id> directories.  A finished upload is
# moved out, a cancelled one (DELETE) removed.

sub upload_sessions {
    my ($root) = @_;

    my @found;
    my @dirs = ("$root/docker/registry/v2/repositories");

    while (my $d = shift @dirs) {
        opendir(my $dh, $d) or next;

        for my $e (grep { !/^\.\.?$/ } readdir $dh) {
            next unless -d "$d/$e";

            if ($e eq '_uploads') {
                opendir(my $uh, "$d/$e") or next;
                push @found, map { "$d/$e/$_" } grep { !/^\.\.?$/ } readdir $uh;
                closedir $uh;
            } elsif ($e !~ /^_/) {
                push @dirs, "$d/$e";
            }
        }

        closedir $dh;
    }

    return @found;
}

# pids of processes (other than this one) whose command line or
# environment contains $marker: what a test left running.

sub processes_mentioning {
    my ($marker) = @_;

    my @found;

    opendir(my $dh, '/proc') or return ();

    for my $p (grep { /^\d+$/ } readdir $dh) {
        next if $p == $$;
        my $cmd = RegTest::slurp("/proc/$p/cmdline");
        my $env = RegTest::slurp("/proc/$p/environ");
        next unless index($cmd, $marker) >= 0 || index($env, $marker) >= 0;
        $cmd =~ tr/\0/ /;
        push @found, "$p: $cmd";
    }

    closedir $dh;

    return @found;
}

1;
