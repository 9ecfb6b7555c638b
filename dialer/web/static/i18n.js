// Every string the pages show, in each language they speak, and the locale-aware formatters.
//
// Markup names its strings with data-i18n="key" (text), data-i18n-placeholder, data-i18n-title
// and data-i18n-aria-label; data-i18n-args holds JSON parameters for "{name}" placeholders.
// applyI18n() fills them all in, so switching language re-translates the page in place.

export const LANGUAGES = ["en", "zh-CN"];
const STORAGE_KEY = "dialer.language";

const en = {
  "app.name": "Collection Dialer",
  "lang.label": "Language",
  "lang.en": "English",
  "lang.zh-CN": "简体中文",
  "signout": "Sign out",
  "conn.live": "Live",
  "conn.connecting": "Connecting…",
  "conn.retry": "Reconnecting in {s} s…",
  "conn.stopped": "Disconnected",
  "error.network": "The server cannot be reached. Check the network and try again.",
  "error.forbidden": "You are not allowed to do this.",
  "error.status": "The server refused the request ({status}).",
  "error.next_allowed": "Next allowed: {at}",
  "done": "Done.",
  "none": "None",
  "dash": "—",

  "login.title": "Sign in",
  "login.subtitle": "Agent desktop and supervisor console",
  "login.tenant": "Tenant",
  "login.username": "Username",
  "login.password": "Password",
  "login.submit": "Sign in",
  "login.busy": "Signing in…",
  "login.bad_credentials": "Wrong tenant, username or password.",
  "login.throttled": "Too many attempts. Try again in {s} seconds.",
  "login.throttled_later": "Too many attempts. Try again later.",
  "login.unknown_role": "This account has no page here (role {role}).",
  "login.missing": "Enter the tenant, your username and your password.",

  "state.logged_out": "Logged out",
  "state.ready": "Ready",
  "state.reserved": "Connecting",
  "state.on_call": "On call",
  "state.wrap_up": "Wrap-up",
  "state.paused": "Paused",

  "reason.break": "Break",
  "reason.lunch": "Lunch",
  "reason.training": "Training",
  "reason.meeting": "Meeting",
  "reason.technical": "Technical issue",
  "reason.callback": "Callback",
  "reason.phone_lost": "Phone lost",
  "reason.login": "Just signed in",
  "agent.transfer": "Transfer to supervisor",
  "agent.transferred": "Put through to a supervisor.",
  "preview.next": "Next case",
  "preview.empty": "Nothing to dial right now.",
  "preview.dial": "Dial",
  "preview.dialling": "Dialling…",

  "agent.title": "Agent desktop",
  "agent.time_in_state": "Time in state",
  "agent.wrap_left": "{s} s left",
  "agent.campaign_is": "Campaign: {campaign}",
  "agent.ready": "Ready",
  "agent.pause": "Pause",
  "agent.pause_reason": "Pause reason",
  "agent.logout": "Log out",
  "agent.phone_up": "Phone connected",
  "agent.phone_lost": "Phone lost — redial",
  "agent.phone_redialling": "Calling your phone…",
  "agent.login_title": "Log in to the dialer",
  "agent.login_phone": "Phone",
  "agent.login_phone_hint": "Extension or channel; leave empty to use your configured phone.",
  "agent.login_submit": "Log in",
  "agent.taken_over": "You are logged in from another browser; this page has stopped.",
  "agent.reload": "Reload",
  "agent.waiting": "Waiting for the next call…",
  "agent.paused_hint": "You are paused. Press Ready to take calls.",
  "agent.logged_out_hint": "Log in to the dialer to take calls.",
  "agent.hangup": "Hang up",
  "agent.call_ended": "Call ended",
  "agent.call_live": "Call in progress",

  "pop.attempt": "Call no.",
  "pop.external_id": "Customer ID",
  "pop.phone": "Number dialled",
  "pop.campaign": "Campaign",
  "pop.accounts": "Accounts",
  "pop.reference": "Reference",
  "pop.balance": "Balance",
  "pop.dpd": "Days past due",
  "pop.status": "Status",
  "pop.total": "Total",
  "pop.compliance": "Compliance notes",
  "pop.history": "Earlier contacts",
  "pop.when": "When",
  "pop.outcome": "Outcome",
  "pop.agent": "Agent",
  "pop.note": "Note",
  "pop.no_history": "No earlier contact.",
  "pop.promises": "Promises to pay",
  "pop.amount": "Amount",
  "pop.due": "Due",
  "pop.account": "Account",
  "pop.no_promises": "No promise to pay.",
  "pop.script": "Script",
  "pop.no_accounts": "No account.",
  "pop.promise_detail": "{amount} by {date}",
  "pop.payment_detail": "{amount} paid",

  "debt.open": "Open",
  "debt.settled": "Settled",
  "debt.closed": "Closed",
  "debt.disputed": "Disputed",

  "kind.attempt": "Call",
  "kind.disposition": "Disposition",

  "outcome.answered": "Answered",
  "outcome.machine": "Answering machine",
  "outcome.busy": "Busy",
  "outcome.no_answer": "No answer",
  "outcome.congestion": "Network busy",
  "outcome.invalid_number": "Invalid number",
  "outcome.failed": "Failed",
  "outcome.unknown": "Unknown",
  "outcome.abandoned": "Abandoned",

  "code.promise_to_pay": "Promise to pay",
  "code.partial_payment": "Partial payment",
  "code.callback": "Callback",
  "code.wrong_party": "Wrong party",
  "code.refused": "Refused to pay",
  "code.dispute": "Dispute",
  "code.deceased": "Deceased",
  "code.do_not_call": "Do not call",
  "code.no_contact": "No contact",
  "code.other": "Other",

  "disp.title": "Disposition",
  "disp.code": "Result",
  "disp.choose": "— choose —",
  "disp.promise_amount": "Promised amount",
  "disp.promise_date": "Promised date",
  "disp.payment_amount": "Amount paid",
  "disp.callback_at": "Call back at",
  "disp.same_agent": "I will take the callback myself",
  "disp.note": "Note",
  "disp.save": "Save disposition",
  "disp.saving": "Saving…",
  "disp.saved": "Saved.",
  "disp.need_code": "Choose a result.",
  "disp.need_amount": "Enter an amount greater than zero.",
  "disp.need_date": "Choose the promised date.",
  "disp.date_past": "The promised date cannot be in the past.",
  "disp.need_callback": "Choose when to call back.",
  "disp.no_case": "Open a case to record its disposition.",

  "sup.title": "Live console",
  "sup.my_phone": "My phone",
  "sup.my_phone_hint": "e.g. 1001",
  "sup.campaigns": "Campaigns",
  "sup.no_campaigns": "No campaign yet.",
  "sup.updated": "Updated {time}",
  "sup.agents": "Agents",
  "sup.no_agents": "No agent logged in.",
  "sup.agent": "Agent",
  "sup.name": "Name",
  "sup.campaign": "Campaign",
  "sup.state": "State",
  "sup.time_in_state": "Time in state",
  "sup.reason": "Reason",
  "sup.call": "Call",
  "sup.monitor": "Monitor",
  "sup.need_phone": "Enter your phone number (top right) first.",
  "sup.spy_started": "Calling your phone to {mode} {agent}.",

  "campaign.running": "Running",
  "campaign.paused": "Paused",
  "campaign.stopped": "Stopped",
  "campaign.active": "Active",
  "campaign.finished": "Finished",

  "mode.preview": "Preview",
  "mode.progressive": "Progressive",
  "mode.ratio": "Fixed ratio",
  "mode.vicidial-adapt": "Adaptive (VICIdial)",
  "mode.predictive": "Predictive",

  "fig.ringing": "Ringing",
  "fig.waiting": "Waiting",
  "fig.connected": "Connected",
  "fig.dials_per_min": "Dials / min",
  "fig.answer_rate": "Live answers",
  "fig.abandon_today": "Abandon today",
  "fig.abandon_24h": "Abandon 24 h",
  "fig.abandon_30d": "Abandon 30 days",
  "fig.target": "Target",
  "fig.max_ratio": "Max ratio",
  "fig.occupancy": "Occupancy",
  "fig.mean_talk": "Mean talk",
  "fig.mean_wrap": "Mean wrap-up",
  "fig.dial_mode_is": "Dial mode: {mode}",

  "chart.abandon": "Abandonment today",
  "chart.occupancy": "Occupancy today",
  "chart.no_data": "No data yet",
  "chart.target_line": "target",

  "ctl.start": "Start",
  "ctl.pause": "Pause",
  "ctl.stop": "Stop",
  "sup.confirm_stop": "Stop campaign “{name}”? Calls in progress finish; no new calls are made.",
  "ctl.dial_mode": "Dial mode",
  "ctl.target": "Target abandonment (%)",
  "ctl.max_ratio": "Max dial ratio",
  "ctl.apply": "Apply",
  "ctl.sending": "Sending…",
  "ctl.accepted": "Accepted; applied on the next pacing tick.",
  "ctl.bad_target": "The target must be between 0 and 100 %.",
  "ctl.bad_ratio": "The ratio must be a number of at least 1.",
  "ctl.nothing": "Nothing changed.",

  "spy.listen": "Listen",
  "spy.whisper": "Whisper",
  "spy.barge": "Barge",
  "spy.listen_verb": "listen to",
  "spy.whisper_verb": "whisper to",
  "spy.barge_verb": "barge in on",

  "nav.qa": "Quality assurance",
  "qa.title": "Quality assurance",
  "qa.tab.search": "Search calls",
  "qa.tab.queue": "Flagged calls",
  "qa.nav.live": "Live console",
  "qa.search.title": "Find calls by what was said",
  "qa.search.query": "Words or phrase",
  "qa.search.query_hint": "e.g. \"have you arrested\" or 还款",
  "qa.search.go": "Search",
  "qa.search.start": "Type words to look for, in English or Chinese (e.g. 还款). A phrase in quotes is found as written.",
  "qa.search.none": "No call says that with these filters.",
  "qa.search.need_words": "Type a word or phrase to look for.",
  "qa.filter.campaign": "Campaign",
  "qa.filter.agent": "Agent",
  "qa.filter.since": "From (date)",
  "qa.filter.until": "To (date, included)",
  "qa.filter.outcome": "Outcome",
  "qa.filter.party": "Said by",
  "qa.filter.flagged": "QA flags",
  "qa.any": "Any",
  "qa.flagged.flagged": "Calls with flags",
  "qa.flagged.unflagged": "Calls without flags",
  "qa.col.call": "Call",
  "qa.col.dialed": "Dialled",
  "qa.col.campaign": "Campaign",
  "qa.col.agent": "Agent",
  "qa.col.party": "Said by",
  "qa.col.at": "At",
  "qa.col.said": "What was said",
  "qa.col.score": "QA score",
  "qa.col.flags": "Flags standing",
  "qa.col.unreviewed": "Not reviewed",
  "qa.col.rule": "Rule",
  "qa.col.right": "Right",
  "qa.col.wrong": "Wrong",
  "qa.col.precision": "Precision",
  "qa.prev": "Previous",
  "qa.next": "Next",
  "qa.range": "{from}–{to}",
  "qa.back": "← Back",
  "qa.call": "Call #{id}",
  "qa.talk_time": "Talk time",
  "qa.score_of": "of 100",
  "qa.transcript": "Transcript",
  "qa.transcript.hint": "Click a line to play the recording from there.",
  "qa.transcript.none": "No transcript yet.",
  "qa.engines": "Transcribed by {engines}",
  "qa.flags": "QA flags",
  "qa.flags.none": "No QA flag on this call.",
  "qa.measures": "Measures",
  "qa.measures.none": "Not measured yet.",
  "qa.audio.none": "No archived recording to play for this call.",
  "qa.audio.error": "The recording cannot be played.",
  "qa.unit.s": "{n} s",
  "qa.at": "at {at}",
  "qa.party.agent": "Agent",
  "qa.party.debtor": "Debtor",
  "qa.party.mixed": "Both",
  "qa.party.call": "Whole call",
  "qa.kind.forbidden": "Forbidden",
  "qa.kind.missing": "Missing",
  "qa.kind.silence": "Silence",
  "qa.kind.overtalk": "Overtalk",
  "qa.match": "match {n}%",
  "qa.match_hint": "How closely the words matched the rule's phrase",
  "qa.verdict.right": "Right",
  "qa.verdict.wrong": "Wrong",
  "qa.verdict.none": "Not reviewed yet",
  "qa.verdict.right_by": "Judged right by {who}, {at}",
  "qa.verdict.wrong_by": "Judged wrong by {who}, {at}",
  "qa.rule_precision": "Rule precision {share} ({right} right, {wrong} wrong, {open} not reviewed)",
  "qa.m.duration": "Length",
  "qa.m.talk_agent": "Agent talk",
  "qa.m.talk_debtor": "Debtor talk",
  "qa.m.talk_mixed": "Talk",
  "qa.m.silence": "Silence",
  "qa.m.longest_silence": "Longest silence",
  "qa.m.overtalk": "Overtalk",
  "qa.m.raised": "Raised voice",
  "qa.m.source": "Measured",
  "qa.m.source_audio": "on the recording",
  "qa.m.source_transcript": "estimated from the transcript",
  "qa.queue.title": "Calls to review",
  "qa.queue.only_flagged": "Only calls with flags",
  "qa.queue.order": "Flagged calls first, those with unreviewed flags first, then the lowest score.",
  "qa.queue.none": "No call to review.",
  "qa.precision.title": "Rule precision",
  "qa.precision.hint": "Share of reviewed flags judged right.",
  "qa.precision.none": "No QA flag yet.",
  "qa.field.q": "Words or phrase",
  "qa.field.campaign_id": "Campaign",
  "qa.field.agent": "Agent",
  "qa.field.since": "From",
  "qa.field.until": "To",
  "qa.field.outcome": "Outcome",
  "qa.field.party": "Said by",
  "qa.field.flagged": "QA flags",
  "qa.field.limit": "Page size",
  "qa.field.offset": "Page",
  "qa.field.verdict": "Verdict",
};

const zhCN = {
  "app.name": "催收外呼系统",
  "lang.label": "语言",
  "lang.en": "English",
  "lang.zh-CN": "简体中文",
  "signout": "退出系统",
  "conn.live": "实时",
  "conn.connecting": "正在连接…",
  "conn.retry": "{s} 秒后重新连接…",
  "conn.stopped": "已断开",
  "error.network": "无法连接服务器，请检查网络后重试。",
  "error.forbidden": "您无权执行此操作。",
  "error.status": "服务器拒绝了请求（{status}）。",
  "error.next_allowed": "最早可联系时间：{at}",
  "done": "操作成功。",
  "none": "无",
  "dash": "—",

  "login.title": "登录",
  "login.subtitle": "坐席工作台与班长监控台",
  "login.tenant": "租户",
  "login.username": "用户名",
  "login.password": "密码",
  "login.submit": "登录",
  "login.busy": "正在登录…",
  "login.bad_credentials": "租户、用户名或密码错误。",
  "login.throttled": "尝试次数过多，请 {s} 秒后再试。",
  "login.throttled_later": "尝试次数过多，请稍后再试。",
  "login.unknown_role": "该账号没有可用的页面（角色：{role}）。",
  "login.missing": "请输入租户、用户名和密码。",

  "state.logged_out": "未签入",
  "state.ready": "就绪",
  "state.reserved": "接入中",
  "state.on_call": "通话中",
  "state.wrap_up": "话后处理",
  "state.paused": "暂停",

  "reason.break": "小休",
  "reason.lunch": "午餐",
  "reason.training": "培训",
  "reason.meeting": "会议",
  "reason.technical": "技术故障",
  "reason.callback": "回拨",
  "reason.phone_lost": "话机断开",
  "reason.login": "刚签入",
  "agent.transfer": "转接班长",
  "agent.transferred": "已转接班长。",
  "preview.next": "下一个案件",
  "preview.empty": "暂无可拨打的案件。",
  "preview.dial": "拨打",
  "preview.dialling": "正在拨打…",

  "agent.title": "坐席工作台",
  "agent.time_in_state": "持续时间",
  "agent.wrap_left": "剩余 {s} 秒",
  "agent.campaign_is": "外呼任务：{campaign}",
  "agent.ready": "就绪",
  "agent.pause": "暂停",
  "agent.pause_reason": "暂停原因",
  "agent.logout": "签出",
  "agent.phone_up": "话机已连接",
  "agent.phone_lost": "话机断开 — 重新呼叫",
  "agent.phone_redialling": "正在呼叫您的话机…",
  "agent.login_title": "签入外呼系统",
  "agent.login_phone": "话机",
  "agent.login_phone_hint": "分机号或通道；留空则使用已配置的话机。",
  "agent.login_submit": "签入",
  "agent.taken_over": "您已在另一个浏览器登录，本页面已停止工作。",
  "agent.reload": "重新加载",
  "agent.waiting": "正在等待下一通电话…",
  "agent.paused_hint": "您处于暂停状态，点击“就绪”开始接听。",
  "agent.logged_out_hint": "请先签入外呼系统再接听电话。",
  "agent.hangup": "挂断",
  "agent.call_ended": "通话已结束",
  "agent.call_live": "通话进行中",

  "pop.attempt": "呼叫编号",
  "pop.external_id": "客户编号",
  "pop.phone": "拨打号码",
  "pop.campaign": "外呼任务",
  "pop.accounts": "欠款账户",
  "pop.reference": "债务编号",
  "pop.balance": "欠款余额",
  "pop.dpd": "逾期天数",
  "pop.status": "状态",
  "pop.total": "合计",
  "pop.compliance": "合规提示",
  "pop.history": "历史联系记录",
  "pop.when": "时间",
  "pop.outcome": "结果",
  "pop.agent": "坐席",
  "pop.note": "备注",
  "pop.no_history": "暂无联系记录。",
  "pop.promises": "还款承诺",
  "pop.amount": "金额",
  "pop.due": "到期日",
  "pop.account": "账户",
  "pop.no_promises": "暂无还款承诺。",
  "pop.script": "话术",
  "pop.no_accounts": "暂无账户。",
  "pop.promise_detail": "{date} 前还款 {amount}",
  "pop.payment_detail": "已还款 {amount}",

  "debt.open": "未结清",
  "debt.settled": "已结清",
  "debt.closed": "已关闭",
  "debt.disputed": "有异议",

  "kind.attempt": "呼叫",
  "kind.disposition": "通话小结",

  "outcome.answered": "已接听",
  "outcome.machine": "答录机",
  "outcome.busy": "占线",
  "outcome.no_answer": "无人接听",
  "outcome.congestion": "网络忙",
  "outcome.invalid_number": "空号",
  "outcome.failed": "呼叫失败",
  "outcome.unknown": "未知",
  "outcome.abandoned": "呼损",

  "code.promise_to_pay": "承诺还款",
  "code.partial_payment": "部分还款",
  "code.callback": "预约回拨",
  "code.wrong_party": "非本人",
  "code.refused": "拒绝还款",
  "code.dispute": "债务异议",
  "code.deceased": "本人已故",
  "code.do_not_call": "要求停止来电",
  "code.no_contact": "未联系上",
  "code.other": "其他",

  "disp.title": "通话小结",
  "disp.code": "结果",
  "disp.choose": "— 请选择 —",
  "disp.promise_amount": "承诺金额",
  "disp.promise_date": "承诺还款日期",
  "disp.payment_amount": "还款金额",
  "disp.callback_at": "回拨时间",
  "disp.same_agent": "由我本人回拨",
  "disp.note": "备注",
  "disp.save": "保存小结",
  "disp.saving": "正在保存…",
  "disp.saved": "已保存。",
  "disp.need_code": "请选择结果。",
  "disp.need_amount": "请输入大于零的金额。",
  "disp.need_date": "请选择承诺还款日期。",
  "disp.date_past": "承诺还款日期不能早于今天。",
  "disp.need_callback": "请选择回拨时间。",
  "disp.no_case": "打开案件后才能填写通话小结。",

  "sup.title": "实时监控",
  "sup.my_phone": "我的话机",
  "sup.my_phone_hint": "例如 1001",
  "sup.campaigns": "外呼任务",
  "sup.no_campaigns": "暂无外呼任务。",
  "sup.updated": "更新于 {time}",
  "sup.agents": "坐席",
  "sup.no_agents": "暂无坐席签入。",
  "sup.agent": "坐席工号",
  "sup.name": "姓名",
  "sup.campaign": "外呼任务",
  "sup.state": "状态",
  "sup.time_in_state": "持续时间",
  "sup.reason": "原因",
  "sup.call": "呼叫",
  "sup.monitor": "监控",
  "sup.need_phone": "请先在右上角填写您的话机号码。",
  "sup.spy_started": "正在呼叫您的话机，{mode}坐席 {agent}。",

  "campaign.running": "运行中",
  "campaign.paused": "已暂停",
  "campaign.stopped": "已停止",
  "campaign.active": "进行中",
  "campaign.finished": "已结束",

  "mode.preview": "预览式",
  "mode.progressive": "渐进式",
  "mode.ratio": "固定比例",
  "mode.vicidial-adapt": "自适应（VICIdial）",
  "mode.predictive": "预测式",

  "fig.ringing": "振铃中",
  "fig.waiting": "等待坐席",
  "fig.connected": "已接通",
  "fig.dials_per_min": "每分钟拨打",
  "fig.answer_rate": "真人接听率",
  "fig.abandon_today": "今日呼损率",
  "fig.abandon_24h": "24小时呼损率",
  "fig.abandon_30d": "30天呼损率",
  "fig.target": "目标",
  "fig.max_ratio": "最大拨打比",
  "fig.occupancy": "坐席利用率",
  "fig.mean_talk": "平均通话时长",
  "fig.mean_wrap": "平均话后处理",
  "fig.dial_mode_is": "外呼模式：{mode}",

  "chart.abandon": "今日呼损率走势",
  "chart.occupancy": "今日坐席利用率走势",
  "chart.no_data": "暂无数据",
  "chart.target_line": "目标",

  "ctl.start": "启动",
  "ctl.pause": "暂停",
  "ctl.stop": "停止",
  "sup.confirm_stop": "确定停止外呼任务“{name}”？进行中的通话会正常结束，不再发起新的呼叫。",
  "ctl.dial_mode": "外呼模式",
  "ctl.target": "目标呼损率（%）",
  "ctl.max_ratio": "最大拨打比",
  "ctl.apply": "应用",
  "ctl.sending": "正在提交…",
  "ctl.accepted": "已接受，将在下一个调度周期生效。",
  "ctl.bad_target": "目标呼损率必须在 0 到 100% 之间。",
  "ctl.bad_ratio": "最大拨打比必须是不小于 1 的数字。",
  "ctl.nothing": "没有任何更改。",

  "spy.listen": "监听",
  "spy.whisper": "耳语",
  "spy.barge": "强插",
  "spy.listen_verb": "监听",
  "spy.whisper_verb": "耳语",
  "spy.barge_verb": "强插",

  "nav.qa": "质检",
  "qa.title": "质检",
  "qa.tab.search": "搜索通话",
  "qa.tab.queue": "待复核通话",
  "qa.nav.live": "实时监控",
  "qa.search.title": "按通话内容查找",
  "qa.search.query": "关键词或短语",
  "qa.search.query_hint": "例如 还款 或 \"have you arrested\"",
  "qa.search.go": "搜索",
  "qa.search.start": "输入要查找的词语，中文或英文均可（例如 还款）。加引号的短语按原文查找。",
  "qa.search.none": "在当前筛选条件下，没有通话包含这些内容。",
  "qa.search.need_words": "请输入要查找的词语。",
  "qa.filter.campaign": "外呼任务",
  "qa.filter.agent": "坐席",
  "qa.filter.since": "起始日期",
  "qa.filter.until": "截止日期（含当天）",
  "qa.filter.outcome": "呼叫结果",
  "qa.filter.party": "说话方",
  "qa.filter.flagged": "质检标记",
  "qa.any": "全部",
  "qa.flagged.flagged": "有标记的通话",
  "qa.flagged.unflagged": "无标记的通话",
  "qa.col.call": "通话",
  "qa.col.dialed": "拨打时间",
  "qa.col.campaign": "外呼任务",
  "qa.col.agent": "坐席",
  "qa.col.party": "说话方",
  "qa.col.at": "位置",
  "qa.col.said": "通话内容",
  "qa.col.score": "质检得分",
  "qa.col.flags": "有效标记",
  "qa.col.unreviewed": "未复核",
  "qa.col.rule": "规则",
  "qa.col.right": "正确",
  "qa.col.wrong": "误报",
  "qa.col.precision": "准确率",
  "qa.prev": "上一页",
  "qa.next": "下一页",
  "qa.range": "第 {from}–{to} 条",
  "qa.back": "← 返回",
  "qa.call": "通话 #{id}",
  "qa.talk_time": "通话时长",
  "qa.score_of": "满分 100",
  "qa.transcript": "通话转写",
  "qa.transcript.hint": "点击任一句即可从该处播放录音。",
  "qa.transcript.none": "暂无转写。",
  "qa.engines": "转写引擎：{engines}",
  "qa.flags": "质检标记",
  "qa.flags.none": "此通话没有质检标记。",
  "qa.measures": "通话指标",
  "qa.measures.none": "尚未测量。",
  "qa.audio.none": "此通话没有可播放的归档录音。",
  "qa.audio.error": "录音无法播放。",
  "qa.unit.s": "{n} 秒",
  "qa.at": "位于 {at}",
  "qa.party.agent": "坐席",
  "qa.party.debtor": "债务人",
  "qa.party.mixed": "双方",
  "qa.party.call": "整通电话",
  "qa.kind.forbidden": "违规用语",
  "qa.kind.missing": "缺少必说",
  "qa.kind.silence": "静音",
  "qa.kind.overtalk": "抢话",
  "qa.match": "匹配 {n}%",
  "qa.match_hint": "转写内容与规则短语的相似程度",
  "qa.verdict.right": "正确",
  "qa.verdict.wrong": "误报",
  "qa.verdict.none": "尚未复核",
  "qa.verdict.right_by": "{who} 判定为正确，{at}",
  "qa.verdict.wrong_by": "{who} 判定为误报，{at}",
  "qa.rule_precision": "规则准确率 {share}（正确 {right}，误报 {wrong}，未复核 {open}）",
  "qa.m.duration": "录音长度",
  "qa.m.talk_agent": "坐席说话",
  "qa.m.talk_debtor": "债务人说话",
  "qa.m.talk_mixed": "说话",
  "qa.m.silence": "静音占比",
  "qa.m.longest_silence": "最长静音",
  "qa.m.overtalk": "抢话",
  "qa.m.raised": "提高音量",
  "qa.m.source": "测量方式",
  "qa.m.source_audio": "基于录音",
  "qa.m.source_transcript": "根据转写估算",
  "qa.queue.title": "待复核通话",
  "qa.queue.only_flagged": "只看有标记的通话",
  "qa.queue.order": "有标记的通话在前，其中未复核的在前，再按得分从低到高。",
  "qa.queue.none": "没有需要复核的通话。",
  "qa.precision.title": "规则准确率",
  "qa.precision.hint": "已复核的标记中判定为正确的比例。",
  "qa.precision.none": "暂无质检标记。",
  "qa.field.q": "关键词或短语",
  "qa.field.campaign_id": "外呼任务",
  "qa.field.agent": "坐席",
  "qa.field.since": "起始日期",
  "qa.field.until": "截止日期",
  "qa.field.outcome": "呼叫结果",
  "qa.field.party": "说话方",
  "qa.field.flagged": "质检标记",
  "qa.field.limit": "每页条数",
  "qa.field.offset": "页码",
  "qa.field.verdict": "复核结论",
};

const DICTIONARIES = { en, "zh-CN": zhCN };

let current = pickInitialLanguage();
const listeners = [];

function normalise(lang) {
  if (!lang) return null;
  if (LANGUAGES.includes(lang)) return lang;
  const lower = String(lang).toLowerCase();
  if (lower.startsWith("zh")) return "zh-CN";
  if (lower.startsWith("en")) return "en";
  return null;
}

function pickInitialLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // storage disabled: fall through to the browser's preference
  }
  return normalise(stored) || normalise(navigator.language) || "en";
}

export function language() {
  return current;
}

// Translate `key`, replacing {name} with params.name. An unknown key shows itself, so a missing
// translation is visible rather than blank.
export function t(key, params) {
  const dict = DICTIONARIES[current] || en;
  let text = dict[key] ?? en[key] ?? key;
  if (params) {
    text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  }
  return text;
}

// A translation when the dictionary has one, else the raw value (an outcome the pages do not
// know yet still shows what the server said).
export function tOr(key, fallback) {
  return key in en ? t(key) : fallback;
}

export function applyI18n(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    const args = el.dataset.i18nArgs ? JSON.parse(el.dataset.i18nArgs) : undefined;
    el.textContent = t(el.dataset.i18n, args);
  }
  for (const [attr, data] of [
    ["placeholder", "i18nPlaceholder"],
    ["title", "i18nTitle"],
    ["aria-label", "i18nAriaLabel"],
  ]) {
    const sel = `[data-i18n-${attr}]`;
    for (const el of root.querySelectorAll(sel)) el.setAttribute(attr, t(el.dataset[data]));
  }
  if (root === document) {
    document.documentElement.lang = current;
    const titleKey = document.documentElement.dataset.titleKey;
    if (titleKey) document.title = `${t(titleKey)} · ${t("app.name")}`;
  }
}

// Set the text of `el` from a key and remember it, so a later language switch re-translates it.
export function setText(el, key, params) {
  el.dataset.i18n = key;
  if (params) el.dataset.i18nArgs = JSON.stringify(params);
  else delete el.dataset.i18nArgs;
  el.textContent = t(key, params);
}

export function setLanguage(lang) {
  const next = normalise(lang) || "en";
  const changed = next !== current;
  current = next;
  try {
    localStorage.setItem(STORAGE_KEY, current);
  } catch {
    // not remembered for the login page; harmless
  }
  applyI18n(document);
  if (changed) for (const fn of listeners) fn(current);
}

export function onLanguageChange(fn) {
  listeners.push(fn);
}

// ---- formatters (all in the current language's locale) ----

const cache = new Map();
function numberFormat(options) {
  const key = `${current}|${JSON.stringify(options)}`;
  let nf = cache.get(key);
  if (!nf) {
    nf = new Intl.NumberFormat(current, options);
    cache.set(key, nf);
  }
  return nf;
}

function toNumber(value) {
  if (value === null || value === undefined || value === "") return null;
  const n = typeof value === "number" ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

export function fmtMoney(amount, currency) {
  const n = toNumber(amount);
  if (n === null) return t("dash");
  if (!currency) return numberFormat({ minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n);
  try {
    return numberFormat({ style: "currency", currency }).format(n);
  } catch {
    // a currency code Intl does not know: the number and the code
    return `${numberFormat({ minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n)} ${currency}`;
  }
}

export function fmtNumber(value, digits = 0) {
  const n = toNumber(value);
  if (n === null) return t("dash");
  return numberFormat({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
}

// A fraction (0.031) as a percentage ("3.1%").
export function fmtPercent(fraction, digits = 1) {
  const n = toNumber(fraction);
  if (n === null) return t("dash");
  return numberFormat({ style: "percent", minimumFractionDigits: 0, maximumFractionDigits: digits }).format(n);
}

// "2026-12-20" is a calendar date, not an instant: read it in local time so it never shifts.
function parseDay(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(value));
  if (m) return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtDate(value) {
  if (!value) return t("dash");
  const d = parseDay(value);
  if (!d) return String(value);
  return new Intl.DateTimeFormat(current, { dateStyle: "medium" }).format(d);
}

export function fmtDateTime(value) {
  if (!value) return t("dash");
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(d);
}

export function fmtTime(value, seconds = false) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return t("dash");
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (seconds) opts.second = "2-digit";
  return new Intl.DateTimeFormat(current, opts).format(d);
}

// Seconds as m:ss, or h:mm:ss past the hour (the same in every language).
export function fmtDuration(seconds) {
  const n = toNumber(seconds);
  if (n === null) return t("dash");
  const s = Math.max(0, Math.floor(n));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
