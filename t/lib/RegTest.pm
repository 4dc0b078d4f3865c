package RegTest;

# Test harness for ngx_http_registry_module: one nginx instance per object,
# in a temporary directory, on a free port of 127.0.0.1.
#
#   use Test::More;
#   use lib 't/lib';
#   use RegTest;            # plan(skip_all) without nginx or the module
#
#   my $t = RegTest->new(delete => 1);
#   my $r = $t->req('GET', '/v2/');
#   ...
#   $t->stop;               # checks error.log (one assertion)
#   done_testing();
#
# RegTest->new(%opts) writes DIR/nginx.conf, starts nginx in the foreground
# (forked, `nginx -p DIR/ -c DIR/nginx.conf -e DIR/error.log -g 'daemon
# off;'`) and returns once the port answers.  Options:
#   delete => 0|1           registry_delete
#   workers => N            worker_processes (1)
#   root => DIR             store root (default DIR/store)
#   location_extra => '...' raw directives inside location /v2/
#   server_extra => '...'   raw directives inside server (relative paths
#                           are relative to DIR)
#   http_extra => '...'     raw directives inside http
#   listen_extra => '...'   parameters of listen, e.g. 'reuseport'
#   events_extra => '...'   raw directives inside events, e.g.
#                           'worker_connections 4096;'
#   expect_in_log => qr/.../ [crit] lines or crashed workers a test
#                           provokes on purpose (a full disk, a kill -9)
#
# $t->port, $t->root, $t->dir, $t->url($path)
# $t->blob_path($digest)         the blob's data file in the store
# $t->layer_link($name, $digest) the repository's _layers link file
# $t->req($method, $path, headers => {...}, content => $bytes | $coderef)
#     HTTP::Tiny response (status, headers with lower-case names, content
#     always defined); a new connection per request; a coderef content is
#     sent with chunked transfer encoding; no redirects; timeout 30 s
# $t->raw($bytes)          whole raw reply of one connection (send
#                          'Connection: close' in the last request)
# $t->push_blob($name, $bytes)   monolithic POST; digest; dies unless 201
# $t->push_manifest($name, $ref, $bytes, $media_type)   PUT; the response
# $t->push_image($name, $ref, type => 'oci'|'docker', config => $bytes,
#                layers => [$bytes, ...])
#     config, layers and manifest; returns { manifest, digest, type, config,
#     layers => [digests], response }; dies unless 201
# RegTest::digest($bytes)  "sha256:<hex>"
# RegTest::error_code($r)  first "code" of a JSON error body, or ''
# $t->error_log            content of DIR/error.log
# $t->pids_of_workers      worker pids (children of the master, from /proc)
# $t->reload(wait => 1)    SIGHUP to the master (what `nginx -s reload`
#                          sends): the configuration is read again and the
#                          workers replaced; returns the new worker pids once
#                          every old worker has exited (dies after 10 s);
#                          wait => 0 returns at once (an old worker still
#                          serving an open request), call reload_done() later
# $t->reload_done          waits as reload does; returns the new worker pids
# $t->crash(after => S)    SIGKILL to the master and every worker (a host's
#                          crash), reaped; with after, the workers S seconds
#                          after the master (they serve on meanwhile)
# $t->restart              starts nginx again on the same dir, conf and port
#                          (after crash); error_log keeps what the earlier
#                          runs logged
# $t->stop                 SIGQUIT, wait up to 10 s, then SIGKILL master and
#                          workers; also done by DESTROY and at END
#
# stop() runs one Test::More assertion: error.log holds no [alert], [emerg]
# or [crit] line and no worker that "exited on signal".  Call it before
# done_testing(), or count it in the plan.  When it runs after
# done_testing() or after the planned count (forgotten stop), a bad log
# fails the file through its exit status instead.
# The store's blocking work runs in registry_thread_pool threads by
# default; upload bodies are hashed there only in buffers of 64 KiB or
# more.  REGTEST_THREADS=1 adds "client_body_buffer_size 1m;" to every
# instance, so that upload bodies go to threads too; REGTEST_THREADS=off
# adds "registry_thread_pool off;", so that everything runs in the event
# loop (make test runs the upload tests all three ways).  A test that sets
# registry_thread_pool itself is left alone.
# REGTEST_LEAVE=1 keeps the temporary directory.  REGTEST_NGINX and
# REGTEST_MODULE override the nginx binary and the module path.  REGTEST_CORE=1
# lets a crashed worker dump DIR/core.
# REGTEST_ASAN=1 (make test-asan, with REGTEST_MODULE a module built with
# -fsanitize=address,undefined): Debian's nginx is not instrumented, so
# the ASan and UBSan runtimes (gcc -print-file-name=libasan.so,
# libubsan.so) are preloaded into it, since ASan must come first among the
# libraries of a process.  Only nginx gets them: LD_PRELOAD, ASAN_OPTIONS
# and UBSAN_OPTIONS are set between fork and exec, never in Perl's own
# %ENV, so curl, skopeo, strace or docker-registry run as they always do.
# Reports go to DIR/asan.PID and DIR/ubsan.PID.  Leak detection is off:
# what a server still holds when it exits is no bug, and LeakSanitizer
# cannot run in a worker that strace is attached to (t/threads.t).  Stacks
# of allocations and frees are unwound the slow way: nginx is built without
# frame pointers, and the fast unwinder stops at ngx_destroy_pool, never
# saying which request freed the memory.  UBSan prints stack traces and
# goes on.  stop()'s assertion then also fails on any such report, or on an
# "ERROR: AddressSanitizer" or "runtime error:" in nginx's stderr
# (DIR/stderr.log), and the reports are printed with diag.  A test that
# runs nginx itself (nginx -t, RegTools::start_nginx) adds
# RegTest::nginx_env($dir, $stderr_file) to that nginx's environment: a
# report in such a $dir fails the file through its exit status at the end.

use strict;
use warnings;

use Config;
use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Test::More ();

our $NGINX = $ENV{REGTEST_NGINX} || '/usr/sbin/nginx';
our $REPO = abs_path(File::Spec->catdir(dirname(abs_path(__FILE__)), '..', '..'));
our $MODULE = $ENV{REGTEST_MODULE}
    || "$REPO/build/ngx_http_registry_module.so";
our $ASAN = $ENV{REGTEST_ASAN} ? 1 : 0;

my @instances;

# REGTEST_ASAN: the runtimes to preload, and the directories (with the
# stderr files) where nginx processes may have left reports
my @asan_libs;
my %sanitized;

sub import {

    # a test stopped by SIGINT or SIGTERM still stops its nginx (END)

    for my $sig ('INT', 'TERM') {
        $SIG{$sig} = sub { Test::More::diag("RegTest: SIG$sig"); exit 1 }
            unless $SIG{$sig};
    }

    unless (-x $NGINX) {
        Test::More::plan(skip_all => "no nginx binary at $NGINX");
    }

    unless (-f $MODULE) {
        Test::More::plan(skip_all => "module not built: $MODULE");
    }

    # a sanitizer run without its runtimes would test nothing: fail, not skip

    if ($ASAN && !@asan_libs) {
        for my $lib ('libasan.so', 'libubsan.so') {
            my $path = `gcc -print-file-name=$lib 2>/dev/null`;
            chomp $path;
            die "REGTEST_ASAN: $lib not found (gcc -print-file-name)\n"
                unless $path =~ m{^/} && -f $path;
            push @asan_libs, abs_path($path);
        }
    }
}

# What REGTEST_ASAN adds to the environment of an nginx whose reports go to
# $dir (see above), as a list of pairs; () without REGTEST_ASAN.  Options
# already in ASAN_OPTIONS or UBSAN_OPTIONS come first, so ours win.
sub nginx_env {
    my ($dir, @stderr) = @_;

    return () unless $ASAN;

    my $s = $sanitized{$dir} ||= { stderr => [] };
    my %seen;
    $s->{stderr} = [ grep { !$seen{$_}++ } @{ $s->{stderr} }, @stderr ];

    return (
        LD_PRELOAD => join(' ', @asan_libs, $ENV{LD_PRELOAD} // ()),
        ASAN_OPTIONS => join(':', $ENV{ASAN_OPTIONS} // (),
                             'detect_leaks=0', 'fast_unwind_on_malloc=0',
                             "log_path=$dir/asan"),
        UBSAN_OPTIONS => join(':', $ENV{UBSAN_OPTIONS} // (),
                              'print_stacktrace=1', "log_path=$dir/ubsan"),
    );
}

# The sanitizer reports of the nginx processes nginx_env($dir) was given
# to: every DIR/asan.PID and DIR/ubsan.PID file, and each stderr file from
# its first report line on; '' when there is none
sub sanitizer_reports {
    my ($dir) = @_;

    my $s = $sanitized{$dir} or return '';
    my $reports = '';

    if (opendir(my $dh, $dir)) {
        for my $f (sort grep { /^(?:asan|ubsan)\.\d+$/ } readdir $dh) {
            $reports .= "==> $dir/$f <==\n" . slurp("$dir/$f");
        }
        closedir $dh;
    }

    for my $f (@{ $s->{stderr} }) {
        my $log = slurp($f);
        next unless $log
            =~ /^[^\n]*(?:ERROR: AddressSanitizer|runtime error:)/m;
        $reports .= "==> $f <==\n" . substr($log, $-[0]);
    }

    return $reports;
}

# the first line of each report: what stop() names in its assertion
sub _report_summary {
    my ($reports) = @_;

    return () if $reports eq '';

    my @first = grep { /ERROR: \w+Sanitizer|runtime error:/ }
                split /\n/, $reports;

    return @first ? @first : ('a sanitizer report (see above)');
}

sub digest {
    my ($bytes) = @_;
    return 'sha256:' . sha256_hex($bytes);
}

sub new {
    my ($class, %opts) = @_;

    my $self = bless {
        delete   => $opts{delete} ? 1 : 0,
        workers  => $opts{workers} || 1,
        location_extra => ($opts{location_extra} || '')
                          . threads_extra($opts{location_extra} || ''),
        server_extra   => $opts{server_extra} || '',
        http_extra     => $opts{http_extra} || '',
        listen_extra   => $opts{listen_extra} || '',
        events_extra   => $opts{events_extra} || '',
        expect_in_log  => $opts{expect_in_log},
        owner    => $$,
    }, $class;

    $self->{dir} = tempdir('regtest-XXXXXXXX', TMPDIR => 1,
                           CLEANUP => !$ENV{REGTEST_LEAVE});
    $self->{root} = $opts{root} || "$self->{dir}/store";

    make_path($self->{root}, "$self->{dir}/temp");

    for my $try (1 .. 10) {
        $self->{port} = free_port();
        $self->_write_conf();

        return $self->_register() if $self->_start();

        my $log = $self->error_log . slurp("$self->{dir}/stderr.log")
                  . sanitizer_reports($self->{dir});

        next if $log =~ /Address already in use/;

        die "nginx failed to start:\n$log";
    }

    die "nginx failed to start: no free port\n";
}

# what REGTEST_THREADS adds to a location (see above)
sub threads_extra {
    my ($extra) = @_;
    my $mode = $ENV{REGTEST_THREADS} // '';

    return '' if $mode eq '' || $extra =~ /registry_thread_pool/;
    return "\nregistry_thread_pool off;" if $mode eq 'off';
    return "\nclient_body_buffer_size 1m;";
}

sub _register {
    my ($self) = @_;

    push @instances, $self;
    weaken($instances[-1]);

    return $self;
}

sub port { $_[0]{port} }
sub root { $_[0]{root} }
sub dir  { $_[0]{dir} }

sub url {
    my ($self, $path) = @_;
    return "http://127.0.0.1:$self->{port}$path";
}

sub blob_path {
    my ($self, $digest) = @_;
    my ($alg, $hex) = split /:/, $digest;
    return "$self->{root}/docker/registry/v2/blobs/$alg/"
           . substr($hex, 0, 2) . "/$hex/data";
}

sub layer_link {
    my ($self, $name, $digest) = @_;
    my ($alg, $hex) = split /:/, $digest;
    return "$self->{root}/docker/registry/v2/repositories/$name/_layers/"
           . "$alg/$hex/link";
}

# a port of 127.0.0.1 nobody listens on right now
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "cannot bind: $!\n";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub _write_conf {
    my ($self) = @_;

    my $d = $self->{dir};
    my $user = $> == 0 ? "user root;\n" : '';
    my $delete = $self->{delete} ? 'on' : 'off';

    # REGTEST_CORE=1: a crashed worker leaves DIR/core (with REGTEST_LEAVE=1
    # to keep DIR)
    my $core = $ENV{REGTEST_CORE}
               ? "worker_rlimit_core 2g;\nworking_directory $d;\n" : '';

    my $conf = <<"EOF";
load_module $MODULE;

${user}${core}worker_processes $self->{workers};
error_log $d/error.log info;
pid $d/nginx.pid;

events {
$self->{events_extra}
}

http {
    access_log $d/access.log;

    client_body_temp_path $d/temp/client_body;
    proxy_temp_path $d/temp/proxy;
    fastcgi_temp_path $d/temp/fastcgi;
    uwsgi_temp_path $d/temp/uwsgi;
    scgi_temp_path $d/temp/scgi;

$self->{http_extra}

    server {
        listen 127.0.0.1:$self->{port} $self->{listen_extra};
        server_name localhost;

        client_max_body_size 0;

$self->{server_extra}

        location /v2/ {
            registry on;
            registry_root $self->{root};
            registry_delete $delete;
$self->{location_extra}
        }
    }
}
EOF

    spew("$d/nginx.conf", $conf);
}

sub _start {
    my ($self) = @_;

    my $d = $self->{dir};

    unlink "$d/error.log", "$d/stderr.log", "$d/nginx.pid";

    my %env = nginx_env($d, "$d/stderr.log");

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>', "$d/stderr.log";
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';

        # REGTEST_ASAN: the sanitizer runtimes for nginx alone
        @ENV{keys %env} = values %env;

        # if the test is killed, nginx gets SIGTERM (prctl PR_SET_PDEATHSIG)

        my $prctl = $Config{archname} =~ /^x86_64-linux/ ? 157
                  : $Config{archname} =~ /^aarch64-linux/ ? 167 : 0;
        syscall($prctl, 1, 15) if $prctl;

        exec($NGINX, '-p', "$d/", '-c', "$d/nginx.conf", '-e', "$d/error.log",
             '-g', 'daemon off;')
            or POSIX::_exit(127);
    }

    $self->{pid} = $pid;

    for (1 .. 200) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            return 0;
        }

        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $self->{port},
                                      Proto => 'tcp');
        if ($s) {
            close $s;

            # the listener is ours only if our master still runs

            if (waitpid($pid, WNOHANG) == $pid) {
                delete $self->{pid};
                return 0;
            }

            # the port answers as soon as the master listens; a slow fork
            # (REGTEST_ASAN, a loaded machine) may not have started every
            # worker yet: wait for them too (up to 10 s)

            for (1 .. 200) {
                my @workers = $self->pids_of_workers;
                last if @workers >= $self->{workers};
                select undef, undef, undef, 0.05;
            }

            return 1;
        }

        select undef, undef, undef, 0.05;
    }

    kill 'KILL', $pid;
    waitpid($pid, 0);
    delete $self->{pid};

    die "nginx did not answer on port $self->{port}\n" . $self->error_log;
}

sub pids_of_workers {
    my ($self) = @_;

    my $master = $self->{pid} or return ();
    my @pids;

    opendir(my $dh, '/proc') or return ();

    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = slurp("/proc/$p/stat");
        next unless $stat =~ /^\d+ \(.*\) \S+ (\d+)/s;
        push @pids, $p + 0 if $1 == $master;
    }

    closedir $dh;

    return sort { $a <=> $b } @pids;
}

sub reload {
    my ($self, %opts) = @_;

    my $master = $self->{pid} or die "reload: nginx is not running\n";
    $self->{old_workers} = { map { $_ => 1 } $self->pids_of_workers };

    kill 'HUP', $master or die "reload: kill HUP $master: $!\n";

    return if defined $opts{wait} && !$opts{wait};

    return $self->reload_done;
}

# rewrites the conf with other options (location_extra, server_extra,
# http_extra, delete) and reloads; reload's options pass through
sub reconfigure {
    my ($self, %opts) = @_;

    my %reload = (wait => delete $opts{wait});
    delete $reload{wait} unless defined $reload{wait};

    for my $k (qw(location_extra server_extra http_extra delete)) {
        $self->{$k} = $opts{$k} if exists $opts{$k};
    }

    $self->{location_extra} .= threads_extra($self->{location_extra})
        if exists $opts{location_extra};

    $self->_write_conf();

    return $self->reload(%reload);
}

sub reload_done {
    my ($self) = @_;

    my $master = $self->{pid} or die "reload: nginx is not running\n";
    my %old = %{ delete $self->{old_workers} || {} };

    for (1 .. 200) {
        die "reload: the master exited\n" . $self->error_log
            if waitpid($master, WNOHANG) == $master;

        my @now = $self->pids_of_workers;
        my @new = grep { !$old{$_} } @now;

        return @new if @new && @new == @now;

        select undef, undef, undef, 0.05;
    }

    die "reload: old workers still running after 10 s\n";
}

sub crash {
    my ($self, %o) = @_;

    my $pid = $self->{pid} or die "crash: nginx is not running\n";
    my @workers = $self->pids_of_workers;

    if ($o{after}) {
        kill 'KILL', $pid;
        select undef, undef, undef, $o{after};
    }

    kill 'KILL', $pid, @workers;
    waitpid($pid, 0);
    delete $self->{pid};

    # the workers are not ours to reap: wait until they are gone
    for (1 .. 200) {
        last unless grep { kill 0, $_ } @workers;
        select undef, undef, undef, 0.05;
    }
}

sub restart {
    my ($self) = @_;

    die "restart: nginx is running\n" if $self->{pid};

    $self->{old_log} = $self->error_log;

    return $self if $self->_start();

    die "nginx failed to restart:\n" . $self->error_log
        . slurp("$self->{dir}/stderr.log");
}

sub stop {
    my ($self) = @_;

    return if $self->{stopped}++;
    return unless $self->{owner} == $$;

    my $pid = delete $self->{pid};

    if ($pid) {
        local $?;
        local $self->{pid} = $pid;
        my @workers = $self->pids_of_workers;

        kill 'QUIT', $pid;

        my $gone = 0;

        for (1 .. 200) {
            if (waitpid($pid, WNOHANG) != 0) {
                $gone = 1;
                last;
            }
            select undef, undef, undef, 0.05;
        }

        unless ($gone) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
        }

        for my $w (@workers) {
            kill 'KILL', $w if kill 0, $w;
        }
    }

    my $log = $self->error_log;
    # expect_in_log: the lines a test provokes on purpose (a full disk, a
    # killed worker); every other one still fails
    my $expected = $self->{expect_in_log};
    my @bad = grep { /\[(?:alert|emerg|crit)\]|exited on signal/
                     && !($expected && /$expected/) }
              split /\n/, $log;

    my $name = 'no alerts, crits or crashes in error.log';

    # REGTEST_ASAN: a sanitizer report fails the same assertion, whatever
    # expect_in_log says; its first lines name it, diag prints it whole

    if ($ASAN) {
        my $reports = sanitizer_reports($self->{dir});
        delete $sanitized{ $self->{dir} };
        push @bad, _report_summary($reports);
        Test::More::diag("RegTest: sanitizer reports:\n$reports") if $reports;
        $name = 'no alerts, crits, crashes or sanitizer reports';
    }

    if (_test_open()) {
        Test::More::is(join("\n", @bad), '', $name);

    } elsif (@bad) {

        # done_testing() was called or the plan is complete: fail the
        # file through its exit status instead of an extra test

        Test::More::diag("not ok - $name:\n" . join("\n", @bad));
        Test::More->builder->is_passing(0);
        $? = 255 if $self->{in_end};
    }

    if ($ENV{REGTEST_LEAVE}) {
        Test::More::diag("RegTest: left $self->{dir}");
    }
}

sub _test_open {
    my $hub = eval { Test2::API::test2_stack()->top } or return 1;

    return 0 if $hub->ended;

    my $plan = $hub->plan;
    return 0 if defined $plan && $plan =~ /^\d+$/ && $hub->count >= $plan;

    return 1;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop() if $self->{owner} && $self->{owner} == $$;
}

END {
    for my $t (@instances) {
        next unless $t && $t->{owner} == $$ && !$t->{stopped};
        local $t->{in_end} = 1;
        $t->stop();
    }

    # REGTEST_ASAN: reports of the nginx processes a test ran itself (nginx
    # -t, RegTools::start_nginx: RegTools, loaded after RegTest, has stopped
    # its servers by now) fail the file through its exit status, like a
    # forgotten stop()

    for my $dir (sort keys %sanitized) {
        my $reports = sanitizer_reports($dir) or next;
        Test::More::diag("not ok - no sanitizer reports in $dir:\n$reports");
        Test::More->builder->is_passing(0);
        $? = 255;
    }
}

sub error_log {
    my ($self) = @_;
    return ($self->{old_log} // '') . slurp("$self->{dir}/error.log");
}

sub _http {
    return HTTP::Tiny->new(max_redirect => 0, timeout => 30,
                           keep_alive => 0, agent => 'regtest/1');
}

sub req {
    my ($self, $method, $path, %args) = @_;

    my %o;
    $o{headers} = $args{headers} if $args{headers};
    $o{content} = $args{content} if defined $args{content};

    my $r = _http()->request($method, $self->url($path), \%o);
    $r->{content} = '' unless defined $r->{content};

    return $r;
}

sub raw {
    my ($self, $bytes, %args) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port},
                                  Proto => 'tcp')
        or die "connect: $!\n";

    my $reply = '';

    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        local $SIG{PIPE} = 'IGNORE';
        alarm($args{timeout} || 30);

        $s->autoflush(1);
        print $s $bytes;

        while (1) {
            my $n = sysread($s, my $buf, 65536);
            last unless $n;
            $reply .= $buf;
        }

        alarm(0);
    };

    alarm(0);
    close $s;

    return $reply;
}

sub push_blob {
    my ($self, $name, $bytes) = @_;

    my $d = digest($bytes);
    my $r = $self->req('POST', "/v2/$name/blobs/uploads/?digest=$d",
                       headers => {
                           'Content-Type' => 'application/octet-stream',
                       },
                       content => $bytes);

    die "push_blob $name $d: $r->{status} $r->{content}\n"
        unless $r->{status} == 201;

    return $d;
}

sub push_manifest {
    my ($self, $name, $ref, $json, $type) = @_;

    $type ||= 'application/vnd.oci.image.manifest.v1+json';

    return $self->req('PUT', "/v2/$name/manifests/$ref",
                      headers => { 'Content-Type' => $type },
                      content => $json);
}

# first error code of a JSON error body, '' when the body is not one

sub error_code {
    my ($r) = @_;

    my $j = eval { JSON::PP->new->decode($r->{content}) };

    return '' unless ref $j eq 'HASH' && ref $j->{errors} eq 'ARRAY'
                     && ref $j->{errors}[0] eq 'HASH';

    return $j->{errors}[0]{code} // '';
}

# one assertion each for an error answer's status, JSON code and API
# version header
sub check_error {
    my ($r, $status, $code, $name) = @_;
    Test::More::is($r->{status}, $status, "$name status");
    Test::More::is(error_code($r), $code, "$name code");
    Test::More::is($r->{headers}{'docker-distribution-api-version'},
                   'registry/2.0', "$name api version");
}

# pushes a config blob, layer blobs and an image manifest; returns a hash:
# { manifest => bytes, digest => d, config => d, layers => [d, ...],
#   response => r }.  opts: type => 'oci' (default) or 'docker',
# layers => [bytes, ...], config => bytes.

sub push_image {
    my ($self, $name, $ref, %o) = @_;

    my $docker = ($o{type} // 'oci') eq 'docker';

    my $config = $o{config}
        // '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers",'
           . '"diff_ids":[]},"tag":"' . $ref . '","n":' . rand() . '}';
    my @layers = @{ $o{layers} // ["layer of $name:$ref " . rand()] };

    my %img = (config => $self->push_blob($name, $config), layers => []);

    my @desc;

    for my $l (@layers) {
        my $d = $self->push_blob($name, $l);
        push @{ $img{layers} }, $d;
        push @desc, {
            mediaType => $docker
                ? 'application/vnd.docker.image.rootfs.diff.tar.gzip'
                : 'application/vnd.oci.image.layer.v1.tar+gzip',
            digest => $d,
            size => length $l,
        };
    }

    my $type = $docker
        ? 'application/vnd.docker.distribution.manifest.v2+json'
        : 'application/vnd.oci.image.manifest.v1+json';

    my $m = {
        schemaVersion => 2,
        mediaType => $type,
        config => {
            mediaType => $docker
                ? 'application/vnd.docker.container.image.v1+json'
                : 'application/vnd.oci.image.config.v1+json',
            digest => $img{config},
            size => length $config,
        },
        layers => \@desc,
    };

    $img{manifest} = JSON::PP->new->canonical->pretty->encode($m);
    $img{digest} = digest($img{manifest});
    $img{type} = $type;
    $img{response} = $self->push_manifest($name, $ref, $img{manifest}, $type);

    die "push_image $name:$ref: $img{response}{status} "
        . "$img{response}{content}\n"
        unless $img{response}{status} == 201;

    return \%img;
}

# the whole file's bytes, '' when it does not exist (a log not yet written)
sub slurp {
    my ($file) = @_;
    open(my $fh, '<', $file) or return '';
    binmode $fh;
    local $/;
    my $data = <$fh>;
    return defined $data ? $data : '';
}

sub spew {
    my ($file, $data) = @_;
    open(my $fh, '>', $file) or die "$file: $!\n";
    binmode $fh;
    print $fh $data;
    close $fh or die "$file: $!\n";
}

1;
