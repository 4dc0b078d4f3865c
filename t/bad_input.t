#!/usr/bin/perl

# The bad-input catalogue: every row of t/data/bad_input.tsv is one
# malformed (or borderline) request with the exact status and spec error
# code it must get.  Three nginx instances share one store: "main" (plain
# HTTP/1.1, deletes on), "tok" (Docker token authentication) and "h2"
# (h2c, requests sent with curl --http2-prior-knowledge).  Requests to
# main and tok are written on raw sockets, so that a row can send what no
# HTTP client library would (control bytes, duplicate headers, a wrong
# Content-Length).  At the end every instance still answers, no worker
# was replaced (a crashed one would be) and stop() finds no crash or
# sanitizer report in error.log (make test-asan runs this file under ASan).
#
# The file's format is described at its top.  BAD_INPUT_ONLY=regex runs
# only the rows whose comment or path matches.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Digest::SHA ();
use JSON::PP;

use lib 't/lib';
use RegTest;
use JWT;

my $TABLE = "$RegTest::REPO/t/data/bad_input.tsv";

my $dir = tempdir('badinput-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});
my $store = "$dir/store";

my $REALM = 'https://auth.example/token';
my $SERVICE = 'bad-registry';
my $ISSUER = 'bad-issuer';

my $key = JWT::genkey($dir, 'p256', 'p256');
my $attacker = JWT::genkey($dir, 'attacker', 'p256');

###############################################################################
# the three servers and what the rows refer to

my %srv;

$srv{main} = RegTest->new(root => $store, delete => 1,
                          location_extra => 'registry_auto_mount on;');

$srv{tok} = RegTest->new(root => $store, delete => 1,
                         location_extra => <<"EOF");
            registry_token_realm $REALM;
            registry_token_service $SERVICE;
            registry_token_issuer $ISSUER;
            registry_token_keys $key->{pub};
EOF

$srv{h2} = RegTest->new(root => $store, delete => 1, listen_extra => 'http2',
                        location_extra => 'registry_manifest_max_size 16k;');

my $main = $srv{main};

my $layer = "a layer of bad/img\n" x 10;            # 190 bytes
my $img = $main->push_image('bad/img', 'v1', layers => [$layer]);
my $m = decode_json($img->{manifest});

# what {name} placeholders expand to (upload sessions are made per row)
my %var = (
    blob       => $img->{layers}[0],
    blobhex    => substr($img->{layers}[0], 7),
    blobsize   => length $layer,
    config     => $img->{config},
    configsize => $m->{config}{size},
    manifest   => $img->{digest},
    mtype      => $img->{type},
    unknown    => RegTest::digest('no such blob'),
    u10        => RegTest::digest('u' x 10),
    u10sha512  => 'sha512:' . Digest::SHA::sha512_hex('u' x 10),
);

my %pids = map { $_ => [ $srv{$_}->pids_of_workers ] } keys %srv;

###############################################################################
# tokens: each {tok:NAME} is minted here, at test time

sub access {
    my ($scope) = @_;
    my ($type, $name, $actions) = $scope =~ /^([^:]+):(.*):([^:]*)$/;
    return [ { type => $type, name => $name,
               actions => [ split /,/, $actions ] } ];
}

sub tok {
    my (%o) = @_;
    return JWT::token(key => $o{key} || $key, alg => $o{alg} || 'ES256',
                      secret => $o{secret},
                      kid => exists $o{kid} ? $o{kid} : JWT::libtrust($key),
                      header => $o{header},
                      ($o{claims_json} ? (claims_json => $o{claims_json})
                                       : ()),
                      claims => JWT::claims(
                          iss => $ISSUER, aud => $SERVICE,
                          access => access($o{scope}
                                           || 'repository:bad/img:pull'),
                          %{ $o{claims} || {} }));
}

my $now = time;
my $good = tok();
my ($gh, $gc, $gs) = split /\./, $good;

my %tokens = (
    good       => $good,
    push       => tok(scope => 'repository:bad/img:pull,push'),
    expired    => tok(claims => { exp => $now - 3600, nbf => $now - 7200,
                                  iat => $now - 7200 }),
    notyet     => tok(claims => { nbf => $now + 3600 }),
    aud        => tok(claims => { aud => 'another-registry' }),
    audlist    => tok(claims => { aud => ['x', 'y'] }),
    iss        => tok(claims => { iss => 'another-issuer' }),
    otherrepo  => tok(scope => 'repository:bad/other:pull'),
    wildcard   => tok(scope => 'repository:bad/*:pull'),
    registry   => tok(scope => 'registry:catalog:*'),
    attacker   => tok(key => $attacker, kid => JWT::libtrust($attacker)),
    attackerkid => tok(key => $attacker),
    nokid      => tok(kid => undef),
    badkid     => tok(kid => 'AAAA:BBBB:CCCC'),
    none       => JWT::b64url('{"alg":"none","typ":"JWT"}') . ".$gc.",
    nonesig    => JWT::b64url('{"alg":"none","typ":"JWT"}') . ".$gc.$gs",
    hs256      => tok(alg => 'HS256', secret => RegTest::slurp($key->{pub})),
    rs256      => JWT::b64url('{"alg":"RS256","typ":"JWT"}') . ".$gc.$gs",
    es384      => JWT::b64url('{"alg":"ES384","typ":"JWT"}') . ".$gc.$gs",
    noalg      => JWT::b64url('{"typ":"JWT"}') . ".$gc.$gs",
    badsig     => "$gh.$gc." . JWT::b64url("\0" x 64),
    shortsig   => "$gh.$gc." . JWT::b64url('abc'),
    swapped    => "$gh." . JWT::b64url(JSON::PP->new->encode({
                      %{ (JWT::decode($good))[1] },
                      access => access('repository:bad/img:pull,push') }))
                  . ".$gs",
    twoparts   => "$gh.$gc",
    fourparts  => "$gh.$gc.$gs.$gs",
    empty3     => '..',
    badb64     => "$gh.$gc.\@\@\@\@",
    padded     => "$gh.$gc.$gs==",
    hdrnotjson => JWT::b64url('not json') . ".$gc.$gs",
    hdrarray   => JWT::b64url('[1,2]') . ".$gc.$gs",
    clmnotjson => "$gh." . JWT::b64url('{"exp":') . ".$gs",
    huge       => "$gh." . JWT::b64url('x' x 3000) . ".$gs",
    nul        => "$gh.$gc.$gs\\x00",
    crit       => tok(header => { crit => ['exp'] }),
    expstring  => tok(claims => { exp => 'tomorrow' }),
    expfloat   => tok(claims => { exp => 1e300 }),
    noexp      => tok(claims_json => JSON::PP->new->encode({
                      iss => $ISSUER, aud => $SERVICE,
                      access => access('repository:bad/img:pull') })),
);

###############################################################################
# reading the table

sub unescape {
    my ($s) = @_;
    $s =~ s/\\(x([0-9a-fA-F]{2})|r|n|t|\\)/
           $1 eq 'r' ? "\r" : $1 eq 'n' ? "\n" : $1 eq 't' ? "\t"
           : $1 eq '\\' ? '\\' : chr(hex $2)/ge;
    return $s;
}

# an upload session of bad/img, its path; $bytes already written to it
sub session {
    my ($t, $bytes) = @_;

    my $r = $main->req('POST', '/v2/bad/img/blobs/uploads/');
    die "session: $r->{status} $r->{content}\n" unless $r->{status} == 202;

    my $loc = $r->{headers}{location};

    if ($bytes) {
        $r = $main->req('PATCH', $loc, content => 'u' x $bytes,
                        headers => { 'Content-Type'
                                     => 'application/octet-stream' });
        die "session patch: $r->{status} $r->{content}\n"
            unless $r->{status} == 202;
    }

    return $loc;
}

# placeholders first (their arguments may hold escapes), escapes last
sub expand {
    my ($s) = @_;

    return '' if $s eq '-';

    1 while $s =~ s/\{rep:(\d+):([^{}]*)\}/$2 x $1/e;
    $s =~ s/\{upload(\d*)\}/session($main, $1 || 0)/ge;
    $s =~ s/\{tok:(\w+)\}/$tokens{$1} \/\/ die "no token $1\n"/ge;
    $s =~ s/\{(\w+)\}/$var{$1} \/\/ die "no placeholder {$1}\n"/ge;

    return unescape($s);
}

my @rows;

open(my $fh, '<', $TABLE) or die "$TABLE: $!\n";

while (my $line = <$fh>) {
    chomp $line;
    next if $line =~ /^\s*(#|$)/;

    my @f = split /\t+/, $line;
    die "$TABLE:$.: 8 or 9 fields expected, got " . @f . "\n"
        unless @f == 8 || @f == 9;

    my %row;
    @row{qw(srv method path headers body status code comment detail)} = @f;
    $row{line} = $.;

    die "$TABLE:$.: unknown server $row{srv}\n" unless $srv{ $row{srv} };

    push @rows, \%row;
}

close $fh;

###############################################################################
# sending

# one request on a new connection, written as given; (status, headers,
# body), status '' when no status line came back
sub send_raw {
    my ($t, $method, $path, $headers, $body, $has_body) = @_;

    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\n";

    $req .= "$_\r\n" for @$headers;

    if ($has_body && !grep { /^(content-length|transfer-encoding):/i }
                            @$headers)
    {
        $req .= 'Content-Length: ' . length($body) . "\r\n";
    }

    $req .= "\r\n" . $body;

    my $reply = $t->raw($req, timeout => 20);

    # an interim 100 Continue (nginx sends it for Expect even when the
    # answer is a refusal) comes before the answer
    $reply =~ s/^HTTP\/1\.1 100 Continue\r\n\r\n//;

    return ('', {}, $reply)
        unless $reply =~ s/^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n(.*?)\r\n\r\n//s;

    my ($status, $head) = ($1, $2);
    my %h;

    for (split /\r\n/, $head) {
        $h{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
    }

    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($reply =~ s/^([0-9a-fA-F]+)\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($reply, 0, $n, '');
            $reply =~ s/^\r\n//;
        }
        $reply = $out;
    }

    return ($status, \%h, $reply);
}

sub send_h2 {
    my ($t, $method, $path, $headers, $body, $has_body) = @_;

    RegTest::spew("$dir/h2body", $body);
    unlink "$dir/h2head", "$dir/h2out";

    my @cmd = ('curl', '-sS', '--http2-prior-knowledge', '--path-as-is',
               '-D', "$dir/h2head", '-o', "$dir/h2out", '-m', '20',
               '-X', $method, ($method eq 'HEAD' ? ('-I') : ()),
               (map { ('-H', $_) } @$headers),
               ($has_body ? ('--data-binary', "\@$dir/h2body") : ()),
               $t->url($path));

    system(@cmd);

    my $head = RegTest::slurp("$dir/h2head");
    my ($status) = $head =~ /^HTTP\/2 (\d{3})/;
    my %h;

    for (split /\r?\n/, $head) {
        $h{ lc $1 } = $2 if /^([^:]+):\s*(.*?)\s*$/;
    }

    return ($status // '', \%h, RegTest::slurp("$dir/h2out"));
}

# (errors[0].code, errors[0].detail) of an error body
sub code_of {
    my ($body) = @_;

    return ('-', '') if $body eq '';

    my $j = eval { JSON::PP->new->decode($body) };

    return ('not-json', '')
        unless ref $j eq 'HASH' && ref $j->{errors} eq 'ARRAY';
    return ($j->{errors}[0]{code} // 'no-code',
            $j->{errors}[0]{detail} // '');
}

my $only = $ENV{BAD_INPUT_ONLY};
my $count = 0;

for my $row (@rows) {
    my $what = "$row->{line}: $row->{srv} $row->{method} $row->{comment}";

    next if $only && "$row->{comment} $row->{path}" !~ /$only/;

    my $path = expand($row->{path});
    my @headers = map { expand($_) } grep { $_ ne '-' }
                  split / ;; /, $row->{headers};
    my $has_body = $row->{body} ne '-';
    my $body = expand($row->{body});

    my $send = $row->{srv} eq 'h2' ? \&send_h2 : \&send_raw;
    my ($status, $h, $content) = $send->($srv{ $row->{srv} }, $row->{method},
                                         $path, \@headers, $body, $has_body);

    # a success's body is not an error's: only its status is checked
    my ($code, $detail) = $row->{method} eq 'HEAD'
                          || ($status =~ /^\d+$/ && $status < 400)
                          ? ('-', '') : code_of($content);

    is("$status $code", "$row->{status} $row->{code}", $what)
        or diag("body: " . substr($content, 0, 300));

    is($detail, expand($row->{detail}), "$what: detail")
        if defined $row->{detail};

    $count++;
}

diag("$count rows");

###############################################################################
# nothing crashed

for my $name (sort keys %srv) {
    my $t = $srv{$name};

    if ($name eq 'h2') {
        my ($status) = send_h2($t, 'GET', '/v2/', [], '', 0);
        is($status, 200, "$name still answers");
    } else {
        my ($status) = send_raw($t, 'GET', '/v2/', [], '', 0);
        is($status, $name eq 'tok' ? 401 : 200, "$name still answers");
    }

    is_deeply([ $t->pids_of_workers ], $pids{$name},
              "$name: the same workers (none crashed)");
    unlike($t->error_log, qr/exited on signal/, "$name: no worker crashed");
}

$srv{tok}->stop;
$srv{h2}->stop;

# the image the rows pushed against is intact
my $r = $main->req('GET', '/v2/bad/img/manifests/v1',
                   headers => { Accept => $img->{type} });
is($r->{content}, $img->{manifest}, 'bad/img:v1 intact');
is($main->req('GET', "/v2/bad/img/blobs/$var{blob}")->{content}, $layer,
   'its layer intact');

$main->stop;

done_testing();
