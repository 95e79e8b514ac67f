#!/usr/bin/env node
/*
 * A test SMSC for Switchboard's SMPP client, built on the npm package `smpp` (MIT, pinned in package.json):
 * the package does the framing, PDU parsing and encoding and the TCP sessions; this script only decides
 * what an SMSC answers. Tests drive it through tests/integration/smsc.py (SmscPeer).
 *
 * Output: one JSON object per line on stdout, one per event, always with "event" and "t" (ms since start):
 *   options {options}  listening {host, port}  connect {session}  (session: this connection's number, from 1)
 *   bind {session, sequence, command, system_id, status, status_name}
 *   submit_sm {session, sequence, count, status, status_name, message_id, source_addr, destination_addr,
 *              data_coding, esm_class, registered_delivery, short_message_hex, udh, concat: {ref, total,
 *              seq}, sar: {ref, total, seq}, message_payload_hex, tlvs: [{tag, value_hex}], body_error}
 *              (status null: not answered, see --drop-after and destinations ending 06)
 *   submit_sm_resp {session, sequence, status, message_id}   (written just before the response is sent)
 *   deliver_sm {session, sequence, kind: receipt|mo, message_id (as in submit_sm_resp), text_id (as in
 *              the receipt text), stat, text}   (written just after the PDU went to the socket)
 *   deliver_sm_resp, enquire_link_resp, unbind_resp, generic_nack {session, sequence, status, status_name,
 *              kind, message_id, answers}   redeliver {kind, message_id, after}
 *   enquire_link, unbind {session, sequence}   enquire_link_sent, unbind_sent (the SMSC's own)
 *   unknown {command_id, raw_hex}   unsupported {command}   drop {session, after, mode}
 *   pdu_error {message} (a PDU the package could not parse)   close {session, unanswered: [...]}
 *   command {cmd}   error {where, message}   exit {reason}
 *
 * Options: --name value or --name=value, or the environment variable SMSC_NAME (upper case, - as _).
 *   --host 127.0.0.1        --port 0 (0: any free port, printed in the "listening" line)
 *   --system-id switchboard --password secret   what a bind must carry (else ESME_RINVSYSID / RINVPASWD)
 *   --smsc-system-id SMSC   the system_id in bind responses
 *   --receipt-delay-ms 50   delay between a submit_sm_resp and its receipt
 *   --no-receipt-tlvs       receipts carry the text only, not receipted_message_id / message_state
 *   --id-form decimal|hex   how submit_sm_resp writes message ids (default decimal)
 *   --receipt-id-form decimal|hex   how the receipt text writes them (default: as --id-form); the
 *                           receipted_message_id TLV always gives the id as submit_sm_resp wrote it
 *                           (§5.3.2.12). Ids are 1600000001, 1600000002, ... (hex 5F5E1001, ...)
 *   --hex-ids               shorthand for --id-form hex --receipt-id-form decimal (a real-world mismatch)
 *   --receipt-before-resp   send the receipt before the submit_sm_resp
 *   --throttle-every N      answer every Nth submit_sm (counted over the process) with ESME_RTHROTTLED
 *   --queue-full-every N    answer every Nth submit_sm with ESME_RMSGQFUL (throttling wins a tie)
 *   --drop-after N          drop the connection (no unbind) when the Nth submit_sm arrives, unanswered (once)
 *   --drop-mode fin|rst     how: fin (default) half-closes after what was already answered, so the client
 *                           reads every response sent, then EOF; rst resets the connection at once
 *   --submit-resp-delay-ms N   wait before each submit_sm_resp (receipts are timed from the response)
 *   --mo-on-bind from,to,text  send that mobile-originated deliver_sm on each successful receiver/transceiver bind
 *
 * Destinations decide a message's fate by their last two digits:
 *   01 UNDELIV   02 EXPIRED   03 refused with ESME_RINVDSTADR   04 accepted, no receipt ever
 *   05 accepted, receipt as usual, and the text echoed back as an MO from that number
 *   06 never answered (no submit_sm_resp, no receipt)   anything else: DELIVRD
 *
 * Receipts are queued per system_id, like a real SMSC's: one due while no receiver/transceiver of that
 * system_id is bound waits for the next bind, and a deliver_sm left unanswered when its session closes is
 * sent again on the next bind (the "close" event lists them). A deliver_sm_resp with ESME_RX_T_APPN,
 * RSYSERR, RTHROTTLED or RMSGQFUL has the deliver_sm sent again receipt-delay-ms later ("redeliver"); any
 * other error status drops it.
 *
 * Commands, one JSON object per line on stdin:
 *   {"cmd":"mo","from":"...","to":"...","text":"...","data_coding":0}  (or "hex" for raw short_message octets;
 *                                                                     "esm_class": 64 when they begin with a UDH)
 *   {"cmd":"mo_burst","count":N,"from":"4915100000000","to":"...","text":"...","window":W}  N MOs as fast as
 *                 they are answered (the inbound benchmark, bench/inbound.py): at most W (default 100) unanswered
 *                 on each bound receiver/transceiver of system_id ("system_id", default --system-id), spread
 *                 over them. MO i comes from `from` + i (when `from` is digits) and says `text` + " " + i, so
 *                 no two are alike. No event per PDU: one "mo_burst_done" at the end {count, answered (ESME_ROK),
 *                 failed (another status, not offered again), retried (ESME_RX_T_APPN etc., offered again),
 *                 statuses {status: count}, first_sent, last_answer (ms since the epoch, fractional),
 *                 latency_ms {p50, p90, p99, max, mean} (deliver_sm written → deliver_sm_resp read, the ESME_ROK
 *                 ones)}. One burst at a time; a session that closes has its unanswered MOs offered again on
 *                 the others.
 *   {"cmd":"unbind"}  the SMSC unbinds every session
 *   {"cmd":"drop","mode":"fin"|"rst"}  drop every connection, as --drop-mode (default: --drop-mode's value)
 *   {"cmd":"enquire_link"}  the SMSC sends enquire_link on every bound session
 * End of stdin, SIGTERM or SIGINT stop the server.
 *
 * What the package does on its own (and what this script adds): it parses whatever it can and hands on
 * PDUs with missing trailing fields (this script walks a submit_sm's frame itself and answers one it cannot
 * walk with ESME_RINVCMDLEN); it never answers anything by itself, not even generic_nack (this
 * script nacks unknown command ids with ESME_RINVCMDID, and other requests it does not implement with
 * generic_nack ESME_RINVCMDID too); on a PDU it cannot parse (command_length over 16384, a field past the
 * end) it emits 'error' and stops reading the connection for good: this script logs "pdu_error" and closes
 * the connection. It rejects a command_length under 16 only because this script adds that check.
 */
'use strict';

const smpp = require('smpp');

const START = Date.now();

// --- options --------------------------------------------------------------------------------------------

const FLAGS = new Set(['no-receipt-tlvs', 'hex-ids', 'receipt-before-resp']);
const DEFAULTS = {
	host: '127.0.0.1',
	port: '0',
	'system-id': 'switchboard',
	password: 'secret',
	'smsc-system-id': 'SMSC',
	'receipt-delay-ms': '50',
	'id-form': 'decimal',
	'receipt-id-form': '',
	'throttle-every': '0',
	'queue-full-every': '0',
	'drop-after': '0',
	'drop-mode': 'fin',
	'submit-resp-delay-ms': '0',
	'mo-on-bind': '',
};

function parseOptions(argv, env) {
	const raw = {};
	for (const name of [...Object.keys(DEFAULTS), ...FLAGS]) {
		const value = env['SMSC_' + name.toUpperCase().replace(/-/g, '_')];
		if (value !== undefined) raw[name] = value;
	}
	for (let i = 0; i < argv.length; i++) {
		const arg = argv[i];
		if (!arg.startsWith('--')) throw new Error('unexpected argument ' + JSON.stringify(arg));
		let name = arg.slice(2);
		let value;
		const eq = name.indexOf('=');
		if (eq >= 0) {
			value = name.slice(eq + 1);
			name = name.slice(0, eq);
		}
		if (FLAGS.has(name)) {
			raw[name] = value === undefined ? '1' : value;
		} else if (name in DEFAULTS) {
			if (value === undefined) {
				if (i + 1 >= argv.length) throw new Error('--' + name + ' needs a value');
				value = argv[++i];
			}
			raw[name] = value;
		} else {
			throw new Error('unknown option --' + name);
		}
	}
	const get = (name) => (name in raw ? raw[name] : DEFAULTS[name]);
	const flag = (name) => name in raw && !['', '0', 'false', 'no'].includes(String(raw[name]).toLowerCase());
	const int = (name) => {
		const value = Number(get(name));
		if (!Number.isInteger(value) || value < 0) throw new Error('--' + name + ' must be an integer >= 0');
		return value;
	};
	const form = (name, fallback) => {
		const value = get(name) || fallback;
		if (value !== 'decimal' && value !== 'hex') throw new Error('--' + name + ' must be decimal or hex');
		return value;
	};
	const options = {
		host: get('host'),
		port: int('port'),
		systemId: get('system-id'),
		password: get('password'),
		smscSystemId: get('smsc-system-id'),
		receiptDelayMs: int('receipt-delay-ms'),
		receiptTlvs: !flag('no-receipt-tlvs'),
		idForm: form('id-form', 'decimal'),
		receiptIdForm: null,
		receiptBeforeResp: flag('receipt-before-resp'),
		throttleEvery: int('throttle-every'),
		queueFullEvery: int('queue-full-every'),
		dropAfter: int('drop-after'),
		dropMode: get('drop-mode'),
		submitRespDelayMs: int('submit-resp-delay-ms'),
		moOnBind: null,
	};
	options.receiptIdForm = form('receipt-id-form', options.idForm);
	if (options.dropMode !== 'fin' && options.dropMode !== 'rst') throw new Error('--drop-mode must be fin or rst');
	if (flag('hex-ids')) {
		options.idForm = 'hex';
		options.receiptIdForm = 'decimal';
	}
	const mo = get('mo-on-bind');
	if (mo) {
		const parts = mo.split(',');
		if (parts.length < 3) throw new Error('--mo-on-bind must be from,to,text');
		options.moOnBind = {from: parts[0], to: parts[1], text: parts.slice(2).join(',')};
	}
	return options;
}

// --- output ---------------------------------------------------------------------------------------------

function emit(event, fields) {
	const line = Object.assign({event: event, t: Date.now() - START}, fields || {});
	// Writes to a pipe are synchronous on Linux: the line is out before the PDU that follows it.
	process.stdout.write(JSON.stringify(line) + '\n');
}

function errorFields(error) {
	return {message: String(error && error.message || error), stack: error && error.stack ? String(error.stack) : null};
}

process.on('uncaughtException', (error) => emit('error', Object.assign({where: 'uncaught'}, errorFields(error))));
process.stdout.on('error', () => process.exit(0)); // the reader has gone (EPIPE): nobody to serve

// --- PDU helpers ----------------------------------------------------------------------------------------

const STATUS_NAMES = {};
for (const name of Object.keys(smpp.errors)) STATUS_NAMES[smpp.errors[name]] = name;
const statusName = (status) => STATUS_NAMES[status] || '0x' + status.toString(16).padStart(8, '0');

// Keep each parsed PDU's frame (non-enumerable, so the package's encoder never sees it): the events report
// the octets on the wire, not the package's decoding of them.
const fromBuffer = smpp.PDU.prototype.fromBuffer;
smpp.PDU.prototype.fromBuffer = function (buffer) {
	Object.defineProperty(this, 'raw', {value: Buffer.from(buffer), enumerable: false, writable: true});
	return fromBuffer.call(this, buffer);
};
// The package takes a command_length of 0..15 and then loses the stream; refuse it like one too large.
const commandLength = smpp.PDU.commandLength;
smpp.PDU.commandLength = function (stream) {
	const length = commandLength.call(smpp.PDU, stream);
	if (length !== false && length < 16) throw new Error('command_length ' + length + ' is under 16');
	return length;
};

const hex = (buffer) => (buffer ? Buffer.from(buffer).toString('hex') : null);

/** short_message octets and TLVs of a submit_sm or deliver_sm as sent, from its frame (§4.4.1). */
function rawBody(frame) {
	let pos = 16;
	const cstring = () => {
		const end = frame.indexOf(0, pos);
		if (end < 0) throw new Error('C-Octet String runs past the frame');
		pos = end + 1;
	};
	const octet = (n) => {
		pos += n;
		if (pos > frame.length) throw new Error('body ends early');
	};
	cstring(); // service_type
	octet(2);
	cstring(); // source_addr
	octet(2);
	cstring(); // destination_addr
	octet(3); // esm_class, protocol_id, priority_flag
	cstring(); // schedule_delivery_time
	cstring(); // validity_period
	octet(4); // registered_delivery .. sm_default_msg_id
	octet(1);
	const size = frame[pos - 1];
	const shortMessage = frame.subarray(pos, pos + size);
	octet(size);
	const tlvs = [];
	while (pos < frame.length) {
		if (pos + 4 > frame.length) throw new Error('body ends inside a TLV header');
		const tag = frame.readUInt16BE(pos);
		const length = frame.readUInt16BE(pos + 2);
		if (pos + 4 + length > frame.length) throw new Error('TLV 0x' + tag.toString(16) + ' runs past the frame');
		tlvs.push({tag: tag, value: frame.subarray(pos + 4, pos + 4 + length)});
		pos += 4 + length;
	}
	return {shortMessage: shortMessage, tlvs: tlvs};
}

/** The UDH and its concatenation element (IEI 00 or 08), when esm_class has UDHI (0x40). */
function userDataHeader(esmClass, shortMessage) {
	if (!(esmClass & 0x40) || shortMessage.length === 0) return {udh: null, concat: null, text: shortMessage};
	const udh = shortMessage.subarray(0, shortMessage[0] + 1);
	let concat = null;
	for (let pos = 1; pos + 1 < udh.length; pos += 2 + udh[pos + 1]) {
		const iei = udh[pos];
		const data = udh.subarray(pos + 2, pos + 2 + udh[pos + 1]);
		if (iei === 0x00 && data.length === 3) concat = {ref: data[0], total: data[1], seq: data[2]};
		if (iei === 0x08 && data.length === 4) concat = {ref: data.readUInt16BE(0), total: data[2], seq: data[3]};
	}
	return {udh: udh, concat: concat, text: shortMessage.subarray(udh.length)};
}

function pad(n) {
	return String(n).padStart(2, '0');
}

/** YYMMDDhhmm in UTC, as receipts write dates. */
function receiptDate(date) {
	return (
		pad(date.getUTCFullYear() % 100) + pad(date.getUTCMonth() + 1) + pad(date.getUTCDate()) +
		pad(date.getUTCHours()) + pad(date.getUTCMinutes())
	);
}

/** The first 20 characters of a message for a receipt's text: field, as printable ASCII. */
function receiptText(dataCoding, octets) {
	const text = dataCoding === 8 ? utf16(octets) : Buffer.from(octets).toString('latin1');
	return text.slice(0, 20).replace(/[^\x20-\x7e]/g, '?');
}

function utf16(octets) {
	const even = Buffer.from(octets.subarray(0, octets.length - (octets.length % 2)));
	return even.swap16().toString('utf16le');
}

// --- the SMSC -------------------------------------------------------------------------------------------

const STATES = {
	DELIVRD: {state: 2, err: '000', dlvrd: '001'},
	EXPIRED: {state: 3, err: '000', dlvrd: '000'},
	UNDELIV: {state: 5, err: '001', dlvrd: '000', network: Buffer.from([3, 0, 1])},
};
// deliver_sm_resp statuses after which the deliver_sm is sent again (receipt-delay-ms later).
const RETRIED = new Set([
	smpp.errors.ESME_RX_T_APPN, smpp.errors.ESME_RSYSERR, smpp.errors.ESME_RTHROTTLED, smpp.errors.ESME_RMSGQFUL,
]);
const ID_BASE = 1600000000; // 0x5F5E1000: ids of 10 decimal digits, and hex ids with letters in them

class Smsc {
	constructor(options) {
		this.options = options;
		this.sessions = new Map(); // number -> {session, number, bound: null|{command, systemId}, pending: Map}
		this.nextSession = 1;
		this.nextId = 1;
		this.submits = 0;
		this.droppedAfter = false; // --drop-after fires once per process
		this.queued = []; // deliver_sm waiting for a bound session: {systemId, build}
		this.burst = null; // the mo_burst command's state
		this.server = smpp.createServer((session) => this.accept(session));
		this.server.on('error', (error) => emit('error', Object.assign({where: 'server'}, errorFields(error))));
	}

	listen() {
		this.server.listen(this.options.port, this.options.host, () => {
			const address = this.server.address();
			emit('listening', {host: address.address, port: address.port});
		});
	}

	accept(session) {
		// systemId outlives bound (cleared by unbind): what was not acknowledged goes back to that queue.
		const state = {session: session, number: this.nextSession++, bound: null, systemId: null, pending: new Map()};
		this.sessions.set(state.number, state);
		const socket = session.socket;
		emit('connect', {session: state.number, remote_port: socket.remotePort});
		session.on('pdu', (pdu) => {
			try {
				this.handle(state, pdu);
			} catch (error) {
				emit('error', Object.assign({where: 'handle', session: state.number, command: pdu.command}, errorFields(error)));
			}
		});
		session.on('error', (error) => {
			if (error && error.code) {
				emit('error', {where: 'socket', session: state.number, code: error.code, message: String(error.message)});
				return;
			}
			// A PDU the package could not parse: it stops reading this connection, so close it.
			emit('pdu_error', {session: state.number, message: String(error && error.message || error)});
			socket.destroy();
		});
		session.on('close', () => this.closed(state));
	}

	closed(state) {
		if (!this.sessions.has(state.number)) return;
		this.sessions.delete(state.number);
		const unanswered = [...state.pending.values()];
		emit('close', {
			session: state.number,
			unanswered: unanswered.map((p) => ({sequence: p.sequence, kind: p.kind, message_id: p.messageId})),
		});
		// An SMSC keeps what was not acknowledged and offers it again on the next bind.
		for (const p of unanswered) {
			if (p.burst) this.burst.retry.push(p.burst.i);
			else if (p.build && state.systemId !== null) this.queued.push({systemId: state.systemId, build: p.build});
		}
		if (this.burst && this.burst.retry.length) for (const s of this.burst.targets) this.burstFill(s);
	}

	send(state, pdu, callback) {
		if (!state.session.socket.writable) return false;
		return state.session.send(pdu, callback);
	}

	respond(state, pdu, fields) {
		return this.send(state, pdu.response(fields || {}));
	}

	handle(state, pdu) {
		const base = {session: state.number, sequence: pdu.sequence_number};
		if (pdu.command === 'unknown') {
			emit('unknown', Object.assign(base, {command_id: pdu.command_id, raw_hex: hex(pdu.raw)}));
			if (!pdu.isResponse()) this.send(state, pdu.response()); // generic_nack ESME_RINVCMDID
			return;
		}
		switch (pdu.command) {
			case 'bind_transceiver':
			case 'bind_transmitter':
			case 'bind_receiver':
				return this.bind(state, pdu, base);
			case 'submit_sm':
				return this.submit(state, pdu, base);
			case 'enquire_link':
				emit('enquire_link', base);
				return this.respond(state, pdu);
			case 'unbind':
				emit('unbind', base);
				this.respond(state, pdu);
				state.bound = null;
				state.session.close();
				return;
			case 'deliver_sm_resp':
			case 'enquire_link_resp':
			case 'unbind_resp':
			case 'generic_nack':
				return this.response(state, pdu, base);
			default:
				emit('unsupported', Object.assign(base, {command: pdu.command, command_id: pdu.command_id}));
				if (!pdu.isResponse()) {
					this.send(state, new smpp.PDU('generic_nack', {
						sequence_number: pdu.sequence_number, command_status: smpp.errors.ESME_RINVCMDID,
					}));
				}
		}
	}

	response(state, pdu, base) {
		const pending = state.pending.get(pdu.sequence_number);
		state.pending.delete(pdu.sequence_number);
		if (pending && pending.burst) return this.burstAnswered(state, pdu, pending.burst);
		const fields = Object.assign(base, {status: pdu.command_status, status_name: statusName(pdu.command_status)});
		if (pending) Object.assign(fields, {kind: pending.kind, message_id: pending.messageId, answers: pending.command});
		emit(pdu.command, fields);
		// A deliver_sm refused for now is offered again, as SMSCs do; one refused for good is dropped.
		if (pending && pending.build && RETRIED.has(pdu.command_status) && state.systemId !== null) {
			const systemId = state.systemId;
			setTimeout(() => {
				emit('redeliver', {kind: pending.kind, message_id: pending.messageId, after: statusName(pdu.command_status)});
				this.queued.push({systemId: systemId, build: pending.build});
				this.flush();
			}, this.options.receiptDelayMs);
		}
	}

	bind(state, pdu, base) {
		const o = this.options;
		let status = smpp.errors.ESME_ROK;
		if (state.bound) status = smpp.errors.ESME_RALYBND;
		else if (pdu.system_id !== o.systemId) status = smpp.errors.ESME_RINVSYSID;
		else if (pdu.password !== o.password) status = smpp.errors.ESME_RINVPASWD;
		emit('bind', Object.assign(base, {
			command: pdu.command, system_id: pdu.system_id, system_type: pdu.system_type,
			interface_version: pdu.interface_version, status: status, status_name: statusName(status),
		}));
		if (status !== smpp.errors.ESME_ROK) {
			this.respond(state, pdu, {command_status: status});
			return;
		}
		state.bound = {command: pdu.command, systemId: pdu.system_id};
		state.systemId = pdu.system_id;
		this.respond(state, pdu, {system_id: o.smscSystemId, sc_interface_version: 0x34});
		if (this.receives(state)) {
			if (o.moOnBind) this.sendMo(state, o.moOnBind.from, o.moOnBind.to, Buffer.from(o.moOnBind.text, 'latin1'), 0);
			this.flush();
		}
	}

	receives(state) {
		return !!state.bound && state.bound.command !== 'bind_transmitter' && !state.dropped && state.session.socket.writable;
	}

	submit(state, pdu, base) {
		const o = this.options;
		this.submits += 1;
		const count = this.submits;
		const destination = pdu.destination_addr || '';
		// The package takes a body cut short (fields missing, sm_length past the end) and hands on what it
		// could read; an SMSC refuses it, and so does this one (ESME_RINVCMDLEN), or a client bug would pass.
		let body = {shortMessage: Buffer.alloc(0), tlvs: []};
		let bodyError = null;
		try {
			body = rawBody(pdu.raw);
		} catch (error) {
			bodyError = String(error.message);
		}
		const esmClass = pdu.esm_class || 0;
		const dataCoding = pdu.data_coding || 0;
		const ud = userDataHeader(esmClass, body.shortMessage);
		const fields = Object.assign(base, {
			count: count,
			service_type: pdu.service_type,
			source_addr: pdu.source_addr,
			destination_addr: destination,
			data_coding: dataCoding,
			esm_class: esmClass,
			registered_delivery: pdu.registered_delivery || 0,
			short_message_hex: hex(body.shortMessage),
			udh: hex(ud.udh),
			concat: ud.concat,
			sar: pdu.sar_msg_ref_num === undefined ? null : {
				ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum,
			},
			message_payload_hex: hex((body.tlvs.find((t) => t.tag === 0x0424) || {}).value),
			tlvs: body.tlvs.map((t) => ({tag: t.tag, value_hex: hex(t.value)})),
			body_error: bodyError,
		});

		if (o.dropAfter && count === o.dropAfter && !this.droppedAfter) {
			this.droppedAfter = true;
			emit('submit_sm', Object.assign(fields, {status: null, status_name: null, message_id: null}));
			emit('drop', {session: state.number, after: count, mode: o.dropMode});
			this.drop(state, o.dropMode);
			return;
		}
		let status = smpp.errors.ESME_ROK;
		if (bodyError) status = smpp.errors.ESME_RINVCMDLEN;
		else if (!state.bound || state.bound.command === 'bind_receiver') status = smpp.errors.ESME_RINVBNDSTS;
		else if (o.throttleEvery && count % o.throttleEvery === 0) status = smpp.errors.ESME_RTHROTTLED;
		else if (o.queueFullEvery && count % o.queueFullEvery === 0) status = smpp.errors.ESME_RMSGQFUL;
		else if (!destination || destination.endsWith('03')) status = smpp.errors.ESME_RINVDSTADR;
		const silent = status === smpp.errors.ESME_ROK && destination.endsWith('06');
		const number = status === smpp.errors.ESME_ROK ? ID_BASE + this.nextId++ : null;
		const messageId = number === null ? null : this.formatId(number, o.idForm);
		emit('submit_sm', Object.assign(fields, {
			status: silent ? null : status, status_name: silent ? null : statusName(status), message_id: messageId,
		}));
		if (silent) return;

		const submitted = new Date();
		const receipt = () => {
			if (!(fields.registered_delivery & 0x03) || destination.endsWith('04')) return;
			const stat = destination.endsWith('01') ? 'UNDELIV' : destination.endsWith('02') ? 'EXPIRED' : 'DELIVRD';
			this.queueReceipt(state.systemId, {
				number: number, messageId: messageId, stat: stat, submitted: submitted,
				from: fields.source_addr, to: destination, text: receiptText(dataCoding, ud.text),
			});
		};
		const answer = () => {
			emit('submit_sm_resp', {session: state.number, sequence: base.sequence, status: status, message_id: messageId});
			if (status !== smpp.errors.ESME_ROK) {
				this.respond(state, pdu, {command_status: status});
				return;
			}
			if (o.receiptBeforeResp) {
				receipt();
				this.flush();
				this.respond(state, pdu, {message_id: messageId});
			} else {
				this.respond(state, pdu, {message_id: messageId});
				setTimeout(() => { receipt(); this.flush(); }, o.receiptDelayMs);
			}
			if (destination.endsWith('05')) {
				setTimeout(() => this.sendMo(state, destination, fields.source_addr, ud.text, dataCoding), o.receiptDelayMs);
			}
		};
		if (o.submitRespDelayMs) setTimeout(answer, o.submitRespDelayMs);
		else answer();
	}

	/** Close a connection without unbind. fin: send what was written, then FIN, and read no more (the socket
	 * goes when the client closes, or after a second). rst: a TCP reset at once (what the client had not
	 * read yet may be lost). */
	drop(state, mode) {
		const socket = state.session.socket;
		state.session.pause();
		state.dropped = true;
		if (mode === 'rst' && typeof socket.resetAndDestroy === 'function') {
			socket.resetAndDestroy();
			return;
		}
		if (mode === 'rst') {
			socket.destroy();
			return;
		}
		socket.end();
		setTimeout(() => socket.destroy(), 1000).unref();
	}

	formatId(number, form) {
		return form === 'hex' ? number.toString(16).toUpperCase() : String(number);
	}

	queueReceipt(systemId, r) {
		const o = this.options;
		const id = this.formatId(r.number, o.receiptIdForm);
		const s = STATES[r.stat];
		const text =
			'id:' + id + ' sub:001 dlvrd:' + s.dlvrd + ' submit date:' + receiptDate(r.submitted) +
			' done date:' + receiptDate(new Date()) + ' stat:' + r.stat + ' err:' + s.err + ' text:' + r.text;
		const build = () => {
			const fields = {
				source_addr: r.to, destination_addr: r.from, esm_class: 0x04, data_coding: 0,
				short_message: Buffer.from(text, 'latin1'),
			};
			if (o.receiptTlvs) {
				fields.receipted_message_id = r.messageId; // as submit_sm_resp wrote it (§5.3.2.12)
				fields.message_state = s.state;
				if (s.network) fields.network_error_code = s.network;
			}
			return {
				pdu: new smpp.PDU('deliver_sm', fields),
				info: {kind: 'receipt', message_id: r.messageId, text_id: id, stat: r.stat, text: text},
			};
		};
		this.queued.push({systemId: systemId, build: build});
	}

	/** Send each queued deliver_sm to a bound receiver/transceiver of its system_id, if there is one. */
	flush() {
		const waiting = [];
		for (const item of this.queued) {
			const state = [...this.sessions.values()].find((s) => this.receives(s) && s.bound.systemId === item.systemId);
			if (state) this.deliver(state, item.build);
			else waiting.push(item);
		}
		this.queued = waiting;
	}

	deliver(state, build) {
		const built = build();
		const pdu = built.pdu;
		if (!this.send(state, pdu)) {
			this.queued.push({systemId: state.systemId, build: build});
			return;
		}
		state.pending.set(pdu.sequence_number, {
			sequence: pdu.sequence_number, kind: built.info.kind, messageId: built.info.message_id,
			command: 'deliver_sm', build: build,
		});
		emit('deliver_sm', Object.assign({session: state.number, sequence: pdu.sequence_number}, built.info));
	}

	sendMo(state, from, to, octets, dataCoding, esmClass = 0) {
		const build = () => ({
			pdu: new smpp.PDU('deliver_sm', {
				source_addr: from, destination_addr: to, esm_class: esmClass, data_coding: dataCoding,
				short_message: Buffer.from(octets),
			}),
			info: {kind: 'mo', message_id: null, source_addr: from, destination_addr: to,
				data_coding: dataCoding, short_message_hex: hex(octets)},
		});
		if (state && this.receives(state)) this.deliver(state, build);
		else if (state && state.bound) {
			this.queued.push({systemId: state.bound.systemId, build: build});
			this.flush();
		}
	}

	command(line) {
		let c;
		try {
			c = JSON.parse(line);
		} catch (error) {
			emit('error', {where: 'stdin', message: 'not JSON: ' + line});
			return;
		}
		const receivers = [...this.sessions.values()].filter((s) => this.receives(s));
		emit('command', {cmd: c.cmd, sessions: receivers.map((s) => s.number)});
		switch (c.cmd) {
			case 'mo': {
				const octets = c.hex !== undefined ? Buffer.from(c.hex, 'hex')
					: c.data_coding === 8 ? Buffer.from(c.text || '', 'utf16le').swap16()
					: Buffer.from(c.text || '', 'latin1');
				const systemId = c.system_id || this.options.systemId;
				// The newest bound session: an older one may still be closing (a test's carrier being stopped),
				// and an MO sent there would wait for yet another bind.
				const target = [...receivers].reverse().find((s) => s.bound.systemId === systemId);
				if (target) this.sendMo(target, c.from || '', c.to || '', octets, c.data_coding || 0, c.esm_class || 0);
				else emit('error', {where: 'stdin', message: 'no bound receiver for an MO'});
				return;
			}
			case 'mo_burst':
				return this.moBurst(c, receivers);
			case 'unbind':
				for (const s of this.sessions.values()) {
					if (!s.bound) continue;
					const pdu = new smpp.PDU('unbind');
					if (this.send(s, pdu)) {
						s.pending.set(pdu.sequence_number, {sequence: pdu.sequence_number, kind: null, messageId: null, command: 'unbind'});
						emit('unbind_sent', {session: s.number, sequence: pdu.sequence_number});
					}
				}
				return;
			case 'enquire_link':
				for (const s of this.sessions.values()) {
					if (!s.bound) continue;
					const pdu = new smpp.PDU('enquire_link');
					if (this.send(s, pdu)) {
						s.pending.set(pdu.sequence_number, {sequence: pdu.sequence_number, kind: null, messageId: null, command: 'enquire_link'});
						emit('enquire_link_sent', {session: s.number, sequence: pdu.sequence_number});
					}
				}
				return;
			case 'drop':
				for (const s of this.sessions.values()) {
					const mode = c.mode || this.options.dropMode;
					emit('drop', {session: s.number, mode: mode});
					this.drop(s, mode);
				}
				return;
			default:
				emit('error', {where: 'stdin', message: 'unknown command ' + JSON.stringify(c.cmd)});
		}
	}

	moBurst(c, receivers) {
		const systemId = c.system_id || this.options.systemId;
		const targets = receivers.filter((s) => s.bound.systemId === systemId);
		if (!targets.length) {
			emit('error', {where: 'stdin', message: 'no bound receiver for an MO burst'});
			return;
		}
		if (this.burst && !this.burst.done) {
			emit('error', {where: 'stdin', message: 'an MO burst is running'});
			return;
		}
		const from = String(c.from || '');
		const count = Number(c.count || 0);
		this.burst = {
			count: count, window: Number(c.window || 100), targets: targets, next: 0, retry: [], done: false,
			from: /^[0-9]+$/.test(from) ? BigInt(from) : null, fromText: from, to: String(c.to || ''),
			text: String(c.text || ''), answered: 0, failed: 0, retried: 0, statuses: {},
			latencies: new Float64Array(count), firstSent: null, lastAnswer: null,
		};
		for (const s of targets) s.burstInFlight = 0;
		if (count === 0) return this.burstDone();
		for (const s of targets) this.burstFill(s);
	}

	/** Keep `window` burst MOs unanswered on this session while there are MOs to send. */
	burstFill(state) {
		const b = this.burst;
		while (!b.done && state.burstInFlight < b.window && this.receives(state)) {
			let i;
			if (b.retry.length) i = b.retry.shift();
			else if (b.next < b.count) i = b.next++;
			else return;
			const pdu = new smpp.PDU('deliver_sm', {
				source_addr: b.from === null ? b.fromText : String(b.from + BigInt(i)), destination_addr: b.to,
				esm_class: 0, data_coding: 0, short_message: Buffer.from(b.text + ' ' + i, 'latin1'),
			});
			if (!this.send(state, pdu)) {
				b.retry.push(i);
				return;
			}
			const at = performance.timeOrigin + performance.now();
			if (b.firstSent === null) b.firstSent = at;
			state.burstInFlight += 1;
			state.pending.set(pdu.sequence_number, {
				sequence: pdu.sequence_number, kind: 'mo', messageId: null, command: 'deliver_sm', burst: {i: i, at: at},
			});
		}
	}

	burstAnswered(state, pdu, sent) {
		const b = this.burst;
		const at = performance.timeOrigin + performance.now();
		state.burstInFlight -= 1;
		const status = pdu.command_status;
		b.statuses[status] = (b.statuses[status] || 0) + 1;
		if (status === smpp.errors.ESME_ROK) {
			b.latencies[b.answered] = at - sent.at;
			b.answered += 1;
			b.lastAnswer = at;
		} else if (RETRIED.has(status)) {
			b.retried += 1;
			b.retry.push(sent.i);
		} else {
			b.failed += 1;
		}
		if (b.answered + b.failed === b.count) this.burstDone();
		else this.burstFill(state);
	}

	burstDone() {
		const b = this.burst;
		b.done = true;
		const sorted = b.latencies.subarray(0, b.answered).sort();
		const at = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))] : null);
		emit('mo_burst_done', {
			count: b.count, answered: b.answered, failed: b.failed, retried: b.retried, statuses: b.statuses,
			first_sent: b.firstSent, last_answer: b.lastAnswer, sessions: b.targets.map((s) => s.number),
			latency_ms: {
				p50: at(50), p90: at(90), p99: at(99), max: sorted.length ? sorted[sorted.length - 1] : null,
				mean: sorted.length ? sorted.reduce((x, y) => x + y, 0) / sorted.length : null,
			},
		});
	}

	stop(reason) {
		emit('exit', {reason: reason});
		for (const s of this.sessions.values()) s.session.socket.destroy();
		this.server.close();
		process.exit(0);
	}
}

function main() {
	let options;
	try {
		options = parseOptions(process.argv.slice(2), process.env);
	} catch (error) {
		emit('error', {where: 'options', message: String(error.message)});
		process.stderr.write(String(error.message) + '\n');
		process.exit(2);
	}
	const smsc = new Smsc(options);
	emit('options', {options: options});
	smsc.listen();
	let buffered = '';
	process.stdin.setEncoding('utf8');
	process.stdin.on('data', (chunk) => {
		buffered += chunk;
		let newline;
		while ((newline = buffered.indexOf('\n')) >= 0) {
			const line = buffered.slice(0, newline).trim();
			buffered = buffered.slice(newline + 1);
			if (line) smsc.command(line);
		}
	});
	process.stdin.on('end', () => smsc.stop('stdin closed'));
	process.on('SIGTERM', () => smsc.stop('SIGTERM'));
	process.on('SIGINT', () => smsc.stop('SIGINT'));
}

main();
