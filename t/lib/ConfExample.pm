package ConfExample;

# The files of conf-examples/ as tests run them, and the keys and
# certificates they need (t/conf_examples.t, t/auth_clients.t,
# t/token_clients.t).
#
#   use lib 't/lib';
#   use RegTest;
#   use ConfExample qw(render_example make_ca make_cert);
#
#   my ($text, @missing) = render_example('basic-auth.conf', $dir,
#       ports => { 5000 => $port, 5001 => $port2 },
#       subst => [[qr{...}, '...'], ...]);
#
# render_example reads conf-examples/NAME and moves everything it names on
# the machine into $dir, the prefix nginx runs with:
#   load_module PATH;          -> the module under test ($RegTest::MODULE)
#   user NAME;                 -> the user running the test
#   /run/nginx.pid             -> $dir/nginx.pid
#   /var/log/nginx/F           -> $dir/log/F
#   /var/lib/registry          -> $dir/store
#   /etc/nginx/F               -> $dir/etc/F (htpasswd, certificates: the
#                                 test writes them there)
#   listen [ADDR:]PORT ...     -> listen 127.0.0.1:ports->{PORT} ...; an
#                                 [::] listen line is dropped
#   worker_rlimit_nofile N;    -> dropped (needs privileges a CI container
#                                 may lack)
#   http {                     -> http { plus the temp paths under $dir
# then each [regexp, replacement] of subst in turn.  Returns the text and
# what did not apply: a listen port not in ports, a subst that matched
# nothing, or a path of the machine left over (/etc/, /var/, /run/,
# /usr/lib/nginx): a test asserts that this list is empty, so a changed
# example cannot silently test something else.  Directories log/, etc/,
# store/ and temp/ are created.
#
# make_ca($dir, $name, $subject) writes $dir/$name.key and $dir/$name.crt,
# a self-signed CA (EC P-256, 2 days).  make_cert($dir, $name, $subject,
# $ca, san => 'IP:127.0.0.1,DNS:localhost') writes $dir/$name.key and
# $dir/$name.crt signed by the CA $dir/$ca.{crt,key} (self-signed when $ca
# is undef).  Both use the openssl CLI and die on failure.
#
# curl_answer(@curl_args): one request with curl -sS; returns { status,
# version (curl's %{http_version}: 1.1, 2), headers (lower-case names; the
# last of each), content, code (the JSON error's, '' if none), out }.
#
# htpasswd(user => password, ...): htpasswd lines, bcrypt ($2y$, cost 5)
# through Perl's crypt, as `htpasswd -B` writes them.
#
# identity_stub($port, $credentials => $user, ...): an identity service
# for auth-request.conf as nginx configuration (a map and a server on
# 127.0.0.1:$port, to add to the same http block): /check answers 200 and
# "X-User: $user" for a request whose Authorization header is one of the
# given values, 200 without X-User for none (or containers/image's empty
# "Basic Og=="), 401 with a Basic challenge for anything else.

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(make_path);
use File::Temp ();

require RegTest;
use RegTools qw(run_cmd);

our @EXPORT_OK = qw(render_example make_ca make_cert htpasswd
                    identity_stub basic curl_answer);

sub render_example {
    my ($name, $dir, %o) = @_;

    my $text = RegTest::slurp("$RegTest::REPO/conf-examples/$name");
    die "conf-examples/$name: empty or missing\n" if $text eq '';

    my $user = getpwuid($>) // 'root';
    my @missing;

    make_path(map { "$dir/$_" } qw(log etc store temp));

    $text =~ s{^load_module \S+;}{load_module $RegTest::MODULE;}m
        or push @missing, 'load_module';
    $text =~ s{^user \S+;}{user $user;}m;
    $text =~ s{/run/nginx\.pid}{$dir/nginx.pid}g;
    $text =~ s{/var/log/nginx/}{$dir/log/}g;
    $text =~ s{/var/lib/registry\b}{$dir/store}g;
    $text =~ s{/etc/nginx/}{$dir/etc/}g;
    $text =~ s{^\s*listen \[::\]:\d+[^;]*;[ \t]*\n}{}mg;
    $text =~ s{^worker_rlimit_nofile \d+;\n}{}m;

    $text =~ s{^(\s*listen )(?:[\d.]+:)?(\d+)\b}{
        my ($lead, $port) = ($1, $2);
        defined $o{ports}{$port}
            ? "${lead}127.0.0.1:$o{ports}{$port}"
            : do { push @missing, "listen $port"; "$lead$port" }
    }mge;

    my $temp = join '', map { "\n    ${_}_temp_path $dir/temp/$_;" }
                   qw(client_body proxy fastcgi uwsgi scgi);
    $text =~ s/^http \{/http {$temp\n/m or push @missing, 'http {';

    for my $s (@{ $o{subst} || [] }) {
        my ($re, $to) = @$s;
        $text =~ s/$re/$to/g or push @missing, "$re";
    }

    # only comments may still name paths of the machine
    for my $line (split /\n/, $text) {
        next if $line =~ /^\s*#/;
        (my $code = $line) =~ s/\s#.*//;
        push @missing, "left: $code"
            if $code =~ m{(?:^|[\s"'])/(?:etc|var|run|usr/lib/nginx)/};
    }

    return ($text, @missing);
}

sub curl_answer {
    my (@args) = @_;

    my $body = File::Temp->new(UNLINK => 1);
    my ($rc, $out) = run_cmd(['curl', '-sS', '-D', '-', '-o', "$body",
                              '-w', "\n%{http_version}", @args]);
    my $content = RegTest::slurp("$body");

    my ($head, $version) = $out =~ /^(.*)\n([\d.]+)$/s;
    ($head) = grep { /\S/ } reverse split /\r?\n\r?\n/, $head // '';  # after 100
    my ($status) = ($head // '') =~ m{^HTTP/\S+ (\d+)}m;
    my %h = map { /^([^:]+):\s*(.*?)\r?$/ ? (lc $1 => $2) : () }
            split /\n/, $head // '';
    my $r = { status => $status // 0, version => $version // '',
              headers => \%h, content => $content, out => $out };
    $r->{code} = RegTest::error_code($r);

    return $r;
}

my $salt = 0;

sub htpasswd {
    my (%users) = @_;

    my @abc = ('.', '/', 'A' .. 'Z', 'a' .. 'z', '0' .. '9');
    my $text = '';

    for my $u (sort keys %users) {
        my $s = join '', map { $abc[($salt++ * 7 + $_ * 13) % 64] } 1 .. 22;
        my $hash = crypt($users{$u}, '$2y$05$' . $s);
        die "crypt: no bcrypt here\n" unless ($hash // '') =~ /^\$2y\$05\$/;
        $text .= "$u:$hash\n";
    }

    return $text;
}

# "Basic base64(user:password)"
sub basic {
    my ($user, $password) = @_;
    require MIME::Base64;
    return 'Basic ' . MIME::Base64::encode_base64("$user:$password", '');
}

sub identity_stub {
    my ($port, %known) = @_;

    my $map = join '', map { "        \"$_\" \"$known{$_}\";\n" }
                      sort keys %known;

    return <<"EOF";
    # a stand-in for the identity service (ConfExample::identity_stub)
    map \$http_authorization \$test_identity {
        ""  "";
        "Basic Og=="  "";
$map        default  "!";
    }

    server {
        listen 127.0.0.1:$port;
        access_log off;

        location = /check {
            if (\$test_identity = "!") {
                add_header WWW-Authenticate 'Basic realm="registry"' always;
                return 401;
            }
            add_header X-User \$test_identity;
            return 200;
        }
    }
EOF
}

sub _openssl {
    my (@args) = @_;
    my ($rc, $out) = run_cmd(['openssl', @args]);
    die "openssl @args: exit $rc\n$out" if $rc;
}

my @EC = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes');

sub make_ca {
    my ($dir, $name, $subject) = @_;

    make_path($dir);
    _openssl('req', '-x509', @EC, '-days', '2', '-subj', $subject,
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
             '-keyout', "$dir/$name.key", '-out', "$dir/$name.crt");
}

my $serial = 1000;

sub make_cert {
    my ($dir, $name, $subject, $ca, %o) = @_;

    make_path($dir);

    unless (defined $ca) {
        _openssl('req', '-x509', @EC, '-days', '2', '-subj', $subject,
                 ($o{san} ? ('-addext', "subjectAltName=$o{san}") : ()),
                 '-keyout', "$dir/$name.key", '-out', "$dir/$name.crt");
        return;
    }

    _openssl('req', '-new', @EC, '-subj', $subject,
             '-keyout', "$dir/$name.key", '-out', "$dir/$name.csr");

    RegTest::spew("$dir/$name.ext",
                  "basicConstraints=CA:FALSE\n"
                  . ($o{san} ? "subjectAltName=$o{san}\n" : ''));

    _openssl('x509', '-req', '-in', "$dir/$name.csr",
             '-CA', "$dir/$ca.crt", '-CAkey', "$dir/$ca.key",
             '-set_serial', $serial++, '-days', '2',
             '-extfile', "$dir/$name.ext", '-out', "$dir/$name.crt");
}

1;
